#!/usr/bin/env bash
# The benchmark run of issue 2, in one go, on this machine:
#   - loopback bandwidth (iperf3 against 127.0.0.1) and sequential write
#     bandwidth with fdatasync (dd), measured in the same run;
#   - lightstream-load against a fresh release broker on a free loopback port:
#     N records of 100 and 1024 bytes to 4 partitions with acks=all, then
#     consumed (through librdkafka, then again with raw Fetch requests); and
#     a steady 50 MB/s offered load for produce latency.
# Prints every figure; asserts nothing. Installs iperf3 if missing.
#
# Usage: bash compat-tests/bench/run.sh [N]     (N defaults to 2,000,000)
#   BENCH_SECTIONS=a,b   the sections to run (all by default)
#   BENCH_BROKER=path    another broker binary (an older build, to compare
#                        in one run on this noisy machine)
#   BENCH_STEADY="12:600000 30:1500000"   section compaction-steady's
#                        produce rates (MB/s) and record counts
#   BENCH_COMPARE_BROKER=path   section compaction reads the compacted topic
#                        with this broker too, after each read with BROKER
#   BENCH_PRODUCE_PAIRS=3   section compaction's produce pairs (0: none)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
N="${1:-2000000}"
SECTIONS="${BENCH_SECTIONS:-throughput,latency,idempotence,groups,s3,compaction,compaction-steady}"
section() { [[ ",$SECTIONS," == *",$1,"* ]]; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"

command -v iperf3 >/dev/null || { apt-get update -q && apt-get install -y -q iperf3; }
cargo build --release -q -p broker -p compat-tests
BIN="$CARGO_TARGET_DIR/release"
BROKER="${BENCH_BROKER:-$BIN/lightstream}"

WORK="$(mktemp -d)"
BROKER_PID=""
IPERF_PID=""
S3_PID=""
cleanup() {
    [[ -n "$BROKER_PID" ]] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null || true
    [[ -n "$S3_PID" ]] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null || true
    [[ -n "$IPERF_PID" ]] && kill "$IPERF_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
echo "== git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

PORT=$(free_port)
iperf3 -s -1 -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
echo "== loopback bandwidth (iperf3 -c 127.0.0.1, 5 s, 1 stream)"
iperf3 -c 127.0.0.1 -p "$PORT" -t 5 -f m | grep -E "sender|receiver"
IPERF_PID=""

echo "== sequential write with fdatasync (dd 1 GiB, bs=1M) in the broker's data directory's filesystem"
dd if=/dev/zero of="$WORK/dd.bin" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1
rm -f "$WORK/dd.bin"

echo "== fdatasync latency: 300 x (write 512 KiB + fdatasync) to one file, the floor under produce latency"
python3 - "$WORK/fsync.bin" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
chunk = b"x" * (512 * 1024)
lat = []
for _ in range(300):
    t = time.perf_counter()
    os.write(fd, chunk)
    os.fdatasync(fd)
    lat.append((time.perf_counter() - t) * 1e3)
os.close(fd)
os.unlink(sys.argv[1])
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"fdatasync_ms p50={pick(0.5):.2f} p99={pick(0.99):.2f} max={lat[-1]:.2f}")
PY

start_broker() {
    PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    [[ -n "${KEEP_DATA:-}" ]] || rm -rf "$WORK/data"
    "$BROKER" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" --data-dir "$WORK/data" --log "${BROKER_LOG:-warn}" 2>>"$WORK/broker.log" &
    BROKER_PID=$!
    for _ in $(seq 100); do
        (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "broker did not start" >&2
    cat "$WORK/broker.log" >&2
    return 1
}
stop_broker() {
    kill -TERM "$BROKER_PID"
    wait "$BROKER_PID" || true
    BROKER_PID=""
}

if section throughput; then
    for SIZE in 100 1024; do
        echo "== lightstream-load: N=$N S=$SIZE P=4 acks=all, unthrottled"
        start_broker
        "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --records "$N" --size "$SIZE" --partitions 4 --consumers 2 --broker-pid "$BROKER_PID"
        echo "-- the same records consumed again with raw Fetch requests (no librdkafka per-record cost)"
        "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --records "$N" --size "$SIZE" --partitions 4 --consumers 2 --raw-fetch --no-produce --broker-pid "$BROKER_PID"
        stop_broker
    done
fi

if section latency; then
    LATENCY_N=$(( N < 1000000 ? N : 1000000 ))
    echo "== lightstream-load: steady 50 MB/s offered, N=$LATENCY_N S=1024 P=4 acks=all, linger.ms=1"
    start_broker
    "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --records "$LATENCY_N" --size 1024 --partitions 4 \
        --rate-mb-s 50 --linger-ms 1 --no-consume --broker-pid "$BROKER_PID"
    stop_broker
fi

if section idempotence; then
    # Off and on alternate, each on a fresh broker, so drift on the shared
    # machine (page cache, other load) hits both alike. Idempotence makes
    # librdkafka keep at most 5 requests in flight per connection, so "off"
    # runs twice: with the client's default and with 5, which isolates the
    # broker's cost (sequence checks, producer state) from the client's.
    for SIZE in 100 1024; do
        for ROUND in 1 2; do
            for MODE in off off-5-in-flight on; do
                echo "== lightstream-load: N=$N S=$SIZE P=4 acks=all idempotence=$MODE (round $ROUND)"
                start_broker
                case "$MODE" in
                    off) FLAGS=() ;;
                    off-5-in-flight) FLAGS=(--max-in-flight 5) ;;
                    on) FLAGS=(--idempotence) ;;
                esac
                "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --records "$N" --size "$SIZE" --partitions 4 \
                    --no-consume "${FLAGS[@]}" --broker-pid "$BROKER_PID"
                stop_broker
            done
        done
    done
fi

if section groups; then
    for HEARTBEAT_MS in 100 10; do
        echo "== lightstream-groups: 10 members + 1 joining, 20 rounds, heartbeat every ${HEARTBEAT_MS} ms; OffsetCommit of 100 partitions"
        start_broker
        "$BIN/lightstream-groups" --bootstrap "127.0.0.1:$PORT" --members 10 --rounds 20 --heartbeat-ms "$HEARTBEAT_MS" \
            --committers 4 --partitions 100 --commit-seconds 10
        stop_broker
    done
fi

# CPU seconds of a process: utime + stime, in clock ticks.
CLK_TCK=$(getconf CLK_TCK)
cpu_s() { awk -v hz="$CLK_TCK" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# A metric of the running broker, and its S3 requests so far by kind
# ("get=.. put=..").
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
s3_requests() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | awk '/^lightstream_object_store_requests_total\{/ {match($0, /kind="[a-z_]+"/); k = substr($0, RSTART + 6, RLENGTH - 7); n[k] += $2} END {for (k in n) printf "%s=%d ", k, n[k]}'
}
s3_gets() { s3_requests | { grep -oE '(^| )get=[0-9]+' || echo get=0; } | cut -d= -f2; }

start_s3() {
    [[ -n "$S3_PID" ]] && return 0
    command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked
    S3_PORT=$(free_port)
    mkdir -p "$WORK/s3/bench"
    s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$S3_PORT") 2>/dev/null && break; sleep 0.1; done
    (echo >/dev/tcp/127.0.0.1/"$S3_PORT") 2>/dev/null || { echo "s3s-fs did not start" >&2; cat "$WORK/s3s.log" >&2; exit 1; }
}

if section s3; then
    start_s3
    echo "== s3s-fs raw upload bandwidth through the broker's S3 client: 128 x 8 MiB PutObject, 4 at a time"
    S3_CPU0=$(cpu_s "$S3_PID")
    CLIENT_CPU=$( { /usr/bin/time -f "%U %S" "$BIN/lightstream-s3-upload" --endpoint "http://127.0.0.1:$S3_PORT" --url s3://bench/raw \
        --access-key-id bench --secret-access-key bench-secret --objects 128 --size 8388608 --concurrency 4 >"$WORK/raw.out"; } 2>&1 | tail -1)
    cut -d' ' -f1-10 "$WORK/raw.out"
    python3 -c "
gb = 128 * 8388608 / 1e9
client = sum(map(float, '$CLIENT_CPU'.split()))
s3 = $(cpu_s "$S3_PID") - $S3_CPU0
print(f'cpu_s_per_gb client={client / gb:.2f} s3_server={s3 / gb:.2f} total={(client + s3) / gb:.2f}')
"
    echo "== the same through multipart uploads: 16 x 64 MiB objects (4 parts of 16 MiB, 8 parts in flight), 2 at a time"
    "$BIN/lightstream-s3-upload" --endpoint "http://127.0.0.1:$S3_PORT" --url s3://bench/raw-multipart \
        --access-key-id bench --secret-access-key bench-secret --objects 16 --size 67108864 --concurrency 2
    # The raw uploads left 1.5 GB of dirty pages; write them back and drop
    # them so the produce run does not compete with their writeback.
    rm -rf "$WORK/s3/bench/raw" "$WORK/s3/bench/raw-multipart"
    sync
    S3_N=$(( N < 1000000 ? N : 1000000 ))
    for SIZE in 1024; do
        echo "== lightstream-load in S3 mode (s3s-fs): N=$S3_N S=$SIZE P=4 acks=all"
        export LIGHTSTREAM_STORAGE_URL="s3://bench/broker-$SIZE" LIGHTSTREAM_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" \
            LIGHTSTREAM_S3_PATH_STYLE=true LIGHTSTREAM_S3_ACCESS_KEY_ID=bench LIGHTSTREAM_S3_SECRET_ACCESS_KEY=bench-secret \
            LIGHTSTREAM_S3_STATS_INTERVAL_MS=1000
        BROKER_LOG="warn,broker::broker=info" start_broker
        "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --records "$S3_N" --size "$SIZE" --partitions 4 --consumers 2 --broker-pid "$BROKER_PID"
        sleep 1.5
        STATS=$(grep "s3 stats" "$WORK/broker.log" | tail -1 | sed 's/.*stats=//')
        echo "broker $STATS"
        python3 - "$STATS" <<'PY'
import re, sys
s = {k: int(v) for k, v in re.findall(r"(\w+?)_(?:requests)=(\d+)", sys.argv[1])}
b = {k: int(v) for k, v in re.findall(r"(\w+?)_bytes=(\d+)", sys.argv[1])}
written = b.get("put", 0) + b.get("upload_part", 0)
gb = max(written, 1) / 1e9
kinds = ["put", "create_multipart", "upload_part", "complete_multipart", "abort_multipart", "get"]
print("s3_requests_per_gb_written " + " ".join(f"{k}={s.get(k, 0) / gb:.1f}" for k in kinds)
      + f" writes_total={sum(s.get(k, 0) for k in kinds[:4]) / gb:.1f}"
      + f" objects_per_gb={(s.get('put', 0) + s.get('complete_multipart', 0)) / gb:.1f}"
      + f" mean_object_mib={written / max(s.get('put', 0) + s.get('complete_multipart', 0), 1) / 2**20:.2f}")
PY
        stop_broker
        # Where the CPU goes: everything runs on the same cores here, so the
        # produce rate is bounded by client + broker + S3 server CPU per GB.
        echo "== CPU seconds per GB produced in S3 mode (produce only, same N and S)"
        BROKER_LOG="warn" start_broker
        S3_CPU0=$(cpu_s "$S3_PID"); BROKER_CPU0=$(cpu_s "$BROKER_PID")
        CLIENT_CPU=$( { /usr/bin/time -f "%U %S" "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --records "$S3_N" \
            --size "$SIZE" --partitions 4 --no-consume --broker-pid "$BROKER_PID" >"$WORK/load.out"; } 2>&1 | tail -1)
        grep produce "$WORK/load.out"
        python3 -c "
n, size = $S3_N, $SIZE
gb = n * size / 1e9
client = sum(map(float, '$CLIENT_CPU'.split()))
s3 = $(cpu_s "$S3_PID") - $S3_CPU0
broker = $(cpu_s "$BROKER_PID") - $BROKER_CPU0
print(f'cpu_s_per_gb client={client / gb:.2f} broker={broker / gb:.2f} s3_server={s3 / gb:.2f} total={(client + broker + s3) / gb:.2f}')
"
        stop_broker
        unset LIGHTSTREAM_STORAGE_URL LIGHTSTREAM_S3_ENDPOINT LIGHTSTREAM_S3_PATH_STYLE LIGHTSTREAM_S3_ACCESS_KEY_ID \
            LIGHTSTREAM_S3_SECRET_ACCESS_KEY LIGHTSTREAM_S3_STATS_INTERVAL_MS
    done
fi

# Waits until the broker's compactor has nothing left: neither the
# rewritten bytes nor the reads and parts written have moved for 40 s
# (rewrites of 64 MiB run together within the byte limit: a minute or more
# may pass before the first lands); at most 15 minutes. SETTLED_AT is when
# they last moved.
wait_for_compactor() {
    local last=-1 still=0 now
    SETTLED_AT=$(date +%s.%N)
    for _ in $(seq 450); do
        sleep 2
        now="$(metric lightstream_object_compaction_rewritten_bytes_total) $(s3_requests | { grep -oE '(get|upload_part)=[0-9]+' || true; } | tr '\n' ' ')"
        if [[ "$now" == "$last" ]]; then
            still=$((still + 1))
            [[ $still -ge 20 ]] && break
        else
            still=0; last=$now; SETTLED_AT=$(date +%s.%N)
            [[ -n "${BENCH_TRACE:-}" ]] && echo "trace t=$(date +%s) $now paced_s=$(metric lightstream_object_compaction_paced_seconds_total)"
        fi
    done
}

if section compaction || section compactor; then
    # Issue 14: a lagging consumer of data written by many small flushes,
    # before and after object compaction, and what compaction costs.
    # Section `compactor` is the produce and the compactor alone, without
    # the reads and the produce pairs (a few minutes instead of ~15): to
    # compare compaction settings, given as LIGHTSTREAM_* variables.
    start_s3
    C_N=$(( N < 1000000 ? N : 1000000 ))
    C_PARTITIONS=16
    export LIGHTSTREAM_STORAGE_URL="s3://bench/compaction" LIGHTSTREAM_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" \
        LIGHTSTREAM_S3_PATH_STYLE=true LIGHTSTREAM_S3_ACCESS_KEY_ID=bench LIGHTSTREAM_S3_SECRET_ACCESS_KEY=bench-secret
    lagging_read() {  # $1: label, $2: extra load-tool flags. One consume of the whole topic from S3 by a fresh broker.
        KEEP_DATA=1 LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=0 start_broker
        local cpu0; cpu0=$(cpu_s "$BROKER_PID")
        local before after
        before=$(s3_requests)
        "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --topic compaction --records "$C_N" --size 1024 \
            --partitions "$C_PARTITIONS" --consumers 2 --no-produce ${2:-} | grep -E "consume"
        after=$(s3_requests)
        python3 - "$1" "$before" "$after" "$(( C_N * 1024 ))" "$(cpu_s "$BROKER_PID")" "$cpu0" \
            "$(metric lightstream_read_ahead_bytes_total)" "$(metric lightstream_read_ahead_wasted_bytes_total)" \
            "$(awk '/VmHWM/ {print $2}' "/proc/$BROKER_PID/status")" <<'PY'
import sys
label, before, after, total, cpu1, cpu0, ahead, wasted, hwm_kb = sys.argv[1:]
total = int(total)
parse = lambda s: {k: int(v) for k, v in (kv.split("=") for kv in s.split())}
b, a = parse(before), parse(after)
gets = a.get("get", 0) - b.get("get", 0)
gb = total / 1e9
print(f"{label}: gets_per_gb={gets / gb:.1f} gets={gets} broker_cpu_s_per_gb={(float(cpu1) - float(cpu0)) / gb:.2f} "
      f"read_ahead_mb={int(ahead or 0) / 1e6:.0f} read_ahead_wasted_mb={int(wasted or 0) / 1e6:.0f} "
      f"broker_peak_rss_mb={int(hwm_kb) / 1024:.0f}")
PY
        stop_broker
    }
    echo "== compaction: produce N=$C_N S=1024 to $C_PARTITIONS partitions at 25 MB/s (small flush runs), compaction off"
    LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=0 start_broker
    "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --topic compaction --records "$C_N" --size 1024 \
        --partitions "$C_PARTITIONS" --rate-mb-s 25 --no-consume | grep -E "produce"
    echo "flushes=$(metric lightstream_flushes_total)"
    stop_broker
    if section compaction; then
        echo "== compaction: lagging consumer before compaction"
        lagging_read before
    fi
    echo "== compaction: the compactor alone (every 100 ms, any age, up to 1,000 rewrites a pass, default byte limit), until it has nothing left"
    KEEP_DATA=1 LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=100 LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS=0 \
        LIGHTSTREAM_OBJECT_COMPACTION_MAX_REWRITES_PER_PASS=1000 start_broker
    C_CPU0=$(cpu_s "$BROKER_PID"); C_S3_CPU0=$(cpu_s "$S3_PID"); C_REQ0=$(s3_requests); C_T0=$(date +%s.%N)
    wait_for_compactor
    C_T1=$SETTLED_AT
    echo "compactor: span_reads=$(metric lightstream_object_compaction_span_reads_total) (ranged GETs of several partitions' runs at once)" \
        "paced_s=$(metric lightstream_object_compaction_paced_seconds_total) (waits for request and byte slots, summed over requests)"
    python3 - "$(cpu_s "$BROKER_PID")" "$C_CPU0" "$(cpu_s "$S3_PID")" "$C_S3_CPU0" "$C_REQ0" "$(s3_requests)" \
        "$(metric lightstream_object_compaction_rewritten_bytes_total)" "$(metric lightstream_object_compaction_rewrites_total)" "$(metric lightstream_object_compaction_replaced_entries_total)" \
        "$C_T0" "$C_T1" "$(metric lightstream_object_compaction_lost_total)" "$(metric lightstream_object_compaction_failures_total)" \
        "$(awk '/VmHWM/ {print $2}' "/proc/$BROKER_PID/status")" <<'PY'
import sys
cpu1, cpu0, s31, s30, req0, req1, rewritten, rewrites, replaced, t0, t1, lost, failures, hwm_kb = sys.argv[1:]
parse = lambda s: {k: int(v) for k, v in (kv.split("=") for kv in s.split())}
r0, r1 = parse(req0), parse(req1)
gb = max(float(rewritten), 1) / 1e9
reqs = {k: r1.get(k, 0) - r0.get(k, 0) for k in r1}
print(f"compactor: rewritten_gb={gb:.3f} rewrites={rewrites} replaced_entries={replaced} lost={lost} failures={failures} "
      f"elapsed_s={float(t1) - float(t0):.1f} (to the last rewrite seen, within 2 s)")
print(f"compactor: cpu_s_per_gb broker={(float(cpu1) - float(cpu0)) / gb:.2f} s3_server={(float(s31) - float(s30)) / gb:.2f} "
      "(CPU counted to the end of the 40 s wait)")
print("compactor: s3_requests_per_gb_rewritten " + " ".join(f"{k}={v / gb:.1f}" for k, v in sorted(reqs.items()) if v))
print(f"compactor: broker_peak_rss_mb={int(hwm_kb) / 1024:.0f} (the broker's whole life: its start and the compactor)")
PY
    stop_broker
    if section compaction; then
        echo "== compaction: yardstick: s3s-fs ranged GETs through the broker's S3 client, 16 x 64 MiB objects (the rewritten ones' size), 16 at a time"
        "$BIN/lightstream-s3-upload" --endpoint "http://127.0.0.1:$S3_PORT" --url s3://bench/raw-get \
            --access-key-id bench --secret-access-key bench-secret --objects 16 --size 67108864 --concurrency 16 --read-back \
            | grep s3_ranged_get
        rm -rf "$WORK/s3/bench/raw-get"
        read_after() {  # lagging_read, then the same with BENCH_COMPARE_BROKER
            lagging_read "$@"
            if [[ -n "${BENCH_COMPARE_BROKER:-}" ]]; then
                BROKER="$BENCH_COMPARE_BROKER" lagging_read "$1-compare" "${@:2}"
            fi
        }
        echo "== compaction: lagging consumer after compaction (default block cache, 256 MiB: read-ahead for 2 partitions at a time)"
        read_after after
        echo "== compaction: lagging consumer after compaction, block cache 2 GiB (read-ahead for all 16 partitions)"
        LIGHTSTREAM_BLOCK_CACHE_MAX_BYTES=2147483648 read_after after-2GiB-cache
        echo "== compaction: the same, default block cache, raw Fetch requests instead of librdkafka (the broker's side alone)"
        read_after after-raw-fetch --raw-fetch
        # 128 partitions: unthrottled flushes of ~8 MiB hold ~64 KiB runs, small
        # enough for the compactor to rewrite while the produce goes on; 3x the
        # records so that the run lasts long enough for rewrites to land.
        P_N=$(( C_N * 3 ))
        # Off and on alternate, three pairs: single runs here swing by +-15 %
        # (docs/benchmarks.md), so the machine's drift falls on both and the
        # mean of the pairs is the figure.
        echo "== compaction: produce N=$P_N S=1024 P=128 unthrottled, compaction off, then on (every 100 ms, any age), ${BENCH_PRODUCE_PAIRS:-3} pairs"
        P_OUT="$WORK/compaction-produce.txt"; : > "$P_OUT"
        for PAIR in $(seq "${BENCH_PRODUCE_PAIRS:-3}"); do
            for SETTING in 0 100; do
                # Each run from empty metadata and an empty bucket: alike, and
                # 18 GB need not stay on disk.
                rm -rf "$WORK/s3/bench/compaction"
                LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=$SETTING LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS=0 \
                    LIGHTSTREAM_OBJECT_COMPACTION_MAX_REWRITES_PER_PASS=1000 start_broker
                P_CPU0=$(cpu_s "$BROKER_PID")
                "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --topic "compaction-produce-$PAIR-$SETTING" --records "$P_N" \
                    --size 1024 --partitions 128 --no-consume | grep -E "produce" | sed "s/^/pair=$PAIR compaction_interval_ms=$SETTING /" \
                    | tee -a "$P_OUT"
                echo "pair=$PAIR compaction_interval_ms=$SETTING broker_cpu_s_per_gb=$(python3 -c "print(f'{($(cpu_s "$BROKER_PID") - $P_CPU0) / ($P_N * 1024 / 1e9):.2f}')")" \
                    "rewrites=$(metric lightstream_object_compaction_rewrites_total) rewritten_bytes=$(metric lightstream_object_compaction_rewritten_bytes_total)" \
                    "lost=$(metric lightstream_object_compaction_lost_total) failures=$(metric lightstream_object_compaction_failures_total)"
                stop_broker
            done
        done
        python3 - "$P_OUT" <<'PY'
import re, sys
runs = {}
for line in open(sys.argv[1]):
    setting = re.search(r"compaction_interval_ms=(\d+)", line).group(1)
    runs.setdefault(setting, []).append(float(re.search(r"mb_per_s=([\d.]+)", line).group(1)))
off, on = runs.get("0", []), runs.get("100", [])
if off and on:
    mean = lambda xs: sum(xs) / len(xs)
    pairs = " ".join(f"{(b / a - 1) * 100:+.1f}%" for a, b in zip(off, on))
    print(f"produce while compacting: off_mean_mb_s={mean(off):.1f} on_mean_mb_s={mean(on):.1f} "
          f"change={(mean(on) / mean(off) - 1) * 100:+.1f}% pairs={pairs}")
PY
    fi
    unset LIGHTSTREAM_STORAGE_URL LIGHTSTREAM_S3_ENDPOINT LIGHTSTREAM_S3_PATH_STYLE LIGHTSTREAM_S3_ACCESS_KEY_ID \
        LIGHTSTREAM_S3_SECRET_ACCESS_KEY
fi

if section compaction-steady; then
    # Does object compaction keep up with a steady produce? (The compaction
    # section's produce either takes the machine or stops.) For each rate,
    # a fresh bucket and a broker with compaction on (every 100 ms, any
    # age, the default byte limit, which yields to produce) taking the
    # records to 16 partitions; then a fresh broker with compaction off
    # reads the whole topic at once. Its GETs per GB show how much was
    # left in flush objects: ~70,000 when none was rewritten, ~16 when all
    # went into 64 MiB objects; in between when all was rewritten but
    # passes every 100 ms made small objects of it. The default rates
    # (about 50 s of produce each) are below and above a third of the
    # default byte limit, what compaction keeps up with. Then a broker with
    # no produce catches up (how long it takes), and the topic is read again.
    start_s3
    export LIGHTSTREAM_STORAGE_URL="s3://bench/steady" LIGHTSTREAM_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" \
        LIGHTSTREAM_S3_PATH_STYLE=true LIGHTSTREAM_S3_ACCESS_KEY_ID=bench LIGHTSTREAM_S3_SECRET_ACCESS_KEY=bench-secret
    for RUN in ${BENCH_STEADY:-12:600000 30:1500000}; do
        RATE=${RUN%%:*}
        RECORDS=${RUN##*:}
        rm -rf "$WORK/s3/bench/steady"
        echo "== compaction-steady: produce $RECORDS x 1 KiB to 16 partitions at $RATE MB/s, compaction on (every 100 ms, any age)"
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
        steady_read() {  # $1: when. The whole topic read at once by a fresh broker, compaction off.
            echo "== compaction-steady: the whole topic read at once by a fresh broker, compaction off, $1"
            KEEP_DATA=1 LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=0 start_broker
            local g0; g0=$(s3_gets)
            "$BIN/lightstream-load" --bootstrap "127.0.0.1:$PORT" --topic steady --records "$RECORDS" --size 1024 \
                --partitions 16 --consumers 2 --no-produce | grep -E "consume"
            python3 -c "print(f'rate_mb_s=$RATE $1 lagging_read_gets_per_gb={($(s3_gets) - $g0) / ($RECORDS * 1024 / 1e9):.0f}')"
            stop_broker
        }
        steady_read after_produce
        # Catching up: the same compaction settings with no produce (a new
        # broker, which walks every partition from its start once).
        echo "== compaction-steady: catching up, compaction on with no produce, until the compactor has nothing left"
        KEEP_DATA=1 LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS=100 LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS=0 \
            LIGHTSTREAM_OBJECT_COMPACTION_MAX_REWRITES_PER_PASS=1000 start_broker
        T0=$(date +%s.%N)
        wait_for_compactor
        python3 -c "print(f'rate_mb_s=$RATE catch_up_s={$SETTLED_AT - $T0:.1f} (to the last rewrite seen, within 2 s)')"
        echo "caught up: rewritten_mb=$(( $(metric lightstream_object_compaction_rewritten_bytes_total) / 1000000 ))" \
            "rewrites=$(metric lightstream_object_compaction_rewrites_total)" \
            "lost=$(metric lightstream_object_compaction_lost_total) failures=$(metric lightstream_object_compaction_failures_total)"
        stop_broker
        steady_read caught_up
    done
    unset LIGHTSTREAM_STORAGE_URL LIGHTSTREAM_S3_ENDPOINT LIGHTSTREAM_S3_PATH_STYLE LIGHTSTREAM_S3_ACCESS_KEY_ID \
        LIGHTSTREAM_S3_SECRET_ACCESS_KEY
fi
