#!/usr/bin/env bash
# Does object compaction keep up with a steady produce? Against s3s-fs:
# for each rate, a fresh bucket, a broker with compaction on (every 100 ms,
# any age, the default byte limit, which yields to produce) taking RECORDS
# x 1 KiB records to 16 partitions at that rate; then a fresh broker with
# compaction off reads the whole topic from S3 at once. GETs per GB of
# that read show how much of the topic was left in flush objects:
# ~70,000 when none was rewritten, ~16 when all of it went into 64 MiB
# objects (docs/benchmarks.md); in between, here, when all was rewritten
# but passes every 100 ms made small objects of it.
# Prints figures; asserts nothing.
#
# Usage: bash compat-tests/bench/compaction-steady.sh [RATE_MB_S:RECORDS ...]
#   (default: 12:600000 30:1500000, about 50 s of produce each: below and
#   above a third of the default byte limit, what compaction keeps up with)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
RUNS=("$@")
[[ ${#RUNS[@]} -gt 0 ]] || RUNS=(12:600000 30:1500000)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
cargo build --release -q -p broker -p compat-tests
BIN="$CARGO_TARGET_DIR/release"
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked

WORK="$(mktemp -d)"
BROKER_PID=""
S3_PID=""
cleanup() {
    [[ -n "$BROKER_PID" ]] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null || true
    [[ -n "$S3_PID" ]] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

S3_PORT=$(free_port)
mkdir -p "$WORK/s3"
s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
S3_PID=$!
wait_port "$S3_PORT" || { echo "s3s-fs did not start" >&2; cat "$WORK/s3s.log" >&2; exit 1; }
export LIGHTSTREAM_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" LIGHTSTREAM_S3_PATH_STYLE=true \
    LIGHTSTREAM_S3_ACCESS_KEY_ID=bench LIGHTSTREAM_S3_SECRET_ACCESS_KEY=bench-secret

start_broker() {
    PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    "$BIN/lightstream" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" --data-dir "$WORK/data" \
        --log warn 2>>"$WORK/broker.log" &
    BROKER_PID=$!
    wait_port "$PORT" || { echo "broker did not start" >&2; cat "$WORK/broker.log" >&2; exit 1; }
}
stop_broker() { kill -TERM "$BROKER_PID"; wait "$BROKER_PID" || true; BROKER_PID=""; }
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
gets() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | awk '/^lightstream_object_store_requests_total\{/ && /kind="get"/ {n += $2} END {print n + 0}'
}

echo "== machine: $(nproc) cores; git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
for RUN in "${RUNS[@]}"; do
    RATE=${RUN%%:*}
    RECORDS=${RUN##*:}
    rm -rf "$WORK/data" "$WORK/s3/bench"
    mkdir -p "$WORK/s3/bench"
    export LIGHTSTREAM_STORAGE_URL="s3://bench/steady"
    echo "== steady produce of $RECORDS x 1 KiB to 16 partitions at $RATE MB/s, compaction on (every 100 ms, any age)"
    LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=100 LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS=0 \
        LIGHTSTREAM_OBJECT_COMPACTION_MAX_REWRITES_PER_PASS=1000 start_broker
    "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --topic steady --records "$RECORDS" --size 1024 \
        --partitions 16 --rate-mb-s "$RATE" --no-consume | grep -E "produce"
    # Rewritten bytes count a run again when a later rewrite merges it
    # with newer runs, so they can pass the flushed bytes.
    echo "at the end of produce: flushed_mb=$(( $(metric lightstream_flushed_bytes_total) / 1000000 ))" \
        "rewritten_mb=$(( $(metric lightstream_object_compaction_rewritten_bytes_total) / 1000000 ))" \
        "rewrites=$(metric lightstream_object_compaction_rewrites_total)" \
        "lost=$(metric lightstream_object_compaction_lost_total) failures=$(metric lightstream_object_compaction_failures_total)"
    stop_broker
    echo "== the whole topic read at once by a fresh broker, compaction off"
    LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=0 start_broker
    G0=$(gets)
    "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --topic steady --records "$RECORDS" --size 1024 \
        --partitions 16 --consumers 2 --no-produce | grep -E "consume"
    python3 -c "print(f'rate_mb_s=$RATE lagging_read_gets_per_gb={($(gets) - $G0) / ($RECORDS * 1024 / 1e9):.0f}')"
    stop_broker
done
