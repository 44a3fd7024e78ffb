#!/usr/bin/env python3
"""A confluent-kafka group consumer in its own process, logging what it sees.

Used by test_groups.py, which needs consumers it can SIGKILL (the session
timeout path) or stop cleanly (SIGTERM → close() → LeaveGroup). It
subscribes to `--topic` in `--group` and appends to `--out`, flushed per line:

    <time> R <partition> <offset> <value>   a consumed record
    <time> A <p,p,...>                      partitions assigned (incrementally for cooperative)
    <time> V <p,p,...>                      partitions revoked
    <time> C                                a synchronous commit succeeded

<time> is `time.time()` when the line was written (same clock for every
consumer on the machine, so logs of several consumers can be merged).

With `--commit` (the default) it commits synchronously after every
non-empty batch, so everything it logged before a `C` line is committed.
Stops on SIGTERM/SIGINT or after `--max-seconds`. Asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--instance-id", default=None)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--no-commit", action="store_true")
    # A backstop for a consumer whose test died without killing it; tests
    # stop or kill their consumers, so this must outlast the slowest test.
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args()

    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    out = open(args.out, "a", encoding="utf-8")

    def log(line: str) -> None:
        out.write(f"{time.time():.6f} {line}\n")
        out.flush()

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.instance_id or "compat-group-consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "partition.assignment.strategy": args.strategy,
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": 500,
    }
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    consumer = Consumer(conf)

    def on_assign(c, partitions):
        log("A " + ",".join(str(p.partition) for p in partitions))

    def on_revoke(c, partitions):
        log("V " + ",".join(str(p.partition) for p in partitions))

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    deadline = time.monotonic() + args.max_seconds
    try:
        while not stop and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=500, timeout=0.2)
            got = False
            for msg in batch:
                if msg.error():
                    print(f"consumer error: {msg.error()}", file=sys.stderr, flush=True)
                    continue
                log(f"R {msg.partition()} {msg.offset()} {msg.value().decode()}")
                got = True
            if got and not args.no_commit:
                try:
                    consumer.commit(asynchronous=False)
                    log("C")
                except KafkaException as e:
                    # A commit refused around a rebalance is allowed; the
                    # records it covered may be consumed again elsewhere.
                    print(f"commit failed: {e}", file=sys.stderr, flush=True)
    finally:
        consumer.close()
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
