#!/usr/bin/env bash
# Builds librdkafka's own integration-test runner (`tests/test-runner`) from
# the source tree that the `rdkafka-sys` crate ships on crates.io — the same
# crate `lightstream-load` builds, so nothing comes from anywhere but a
# registry. Prints the path of the built tests/ directory on its last line.
#
# The tree is copied out of cargo's registry (never built in place) into a
# cache directory keyed by the crate's version, and built once per machine:
# `./configure` (no --install-deps: nothing may be downloaded), `make libs`,
# then the tests' own Makefile. About 10 minutes on 2 cores; a later run
# finds the stamp and returns at once. The Debian -dev packages the build
# needs are installed by .ci/test-all.sh (step 1).
#
# Environment:
#   LIGHTSTREAM_CACHE_DIR  where the build lives (default ~/.cache/lightstream)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_DIR="${LIGHTSTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lightstream}"

# The crate's source directory, from the workspace's own lock file.
cd "$REPO_ROOT"
cargo fetch --locked -q
crate_dir="$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "rdkafka-sys":
        print(os.path.dirname(p["manifest_path"]), p["version"])
        break
')"
read -r crate_src crate_version <<<"$crate_dir"
if [[ -z "${crate_src:-}" || ! -f "$crate_src/librdkafka/tests/test.c" ]]; then
    echo "rdkafka-sys not found in the workspace's dependencies (cargo metadata)" >&2
    exit 1
fi

build_dir="$CACHE_DIR/librdkafka-tests-$crate_version"
stamp="$build_dir/.lightstream-built"
if [[ -f "$stamp" && -x "$build_dir/tests/test-runner" ]]; then
    echo "librdkafka test-runner: cached in $build_dir (rdkafka-sys $crate_version)" >&2
    echo "$build_dir/tests"
    exit 0
fi

echo "librdkafka test-runner: building from rdkafka-sys $crate_version into $build_dir (about 10 minutes, once per machine)" >&2
rm -rf "$build_dir"
mkdir -p "$CACHE_DIR"
cp -a "$crate_src/librdkafka" "$build_dir"
chmod -R u+w "$build_dir"
log="$build_dir/build.log"
(
    cd "$build_dir"
    ./configure >"$log" 2>&1
    make -j"$(nproc)" libs >>"$log" 2>&1
    make -C tests -j"$(nproc)" build >>"$log" 2>&1
) || {
    echo "librdkafka test-runner build failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
}
touch "$stamp"
echo "$build_dir/tests"
