#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for FUZZ_SECONDS (default 30): a short run
# in the test command that catches regressions in frame decoding and batch
# validation; run longer by hand (FUZZ_SECONDS=3600 bash .ci/fuzz.sh).
# Installs cargo-fuzz when missing. A crash leaves its input under
# fuzz/artifacts/TARGET/ and fails the run: keep it in fuzz/regressions/TARGET/
# (each run starts from those) and turn it into a test in protocol/tests/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "cargo: installing cargo-fuzz $CARGO_FUZZ_VERSION (once per machine)"
    cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi

# cargo-fuzz passes -Z flags (sanitizers, coverage); RUSTC_BOOTSTRAP lets the
# pinned stable toolchain accept them. Its rust-std ships the ASan runtime.
export RUSTC_BOOTSTRAP=1
cd fuzz
for target in frame_decode batch_validate; do
    mkdir -p "corpus/$target"
    # Seeds: the regression inputs, so each run starts from known shapes.
    if [[ -d "regressions/$target" ]]; then
        cp -n regressions/"$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
    cargo fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1
done
