#!/usr/bin/env python3
"""Produce until told to stop, writing every acknowledged record to a file.

Used by test_restart.py to crash the broker under load: this process keeps
producing (confluent-kafka, acks=all, not idempotent, a few ms of linger)
round-robin to the topic's partitions, and for every successful delivery
report appends one line `PARTITION OFFSET PAYLOAD` to `--out`, flushed at
once, so the test can read what was acknowledged while this still runs.

Payloads are `seq-NNNNNNNNN` with a strictly increasing sequence number, so a
reader can check that, per partition, acknowledged payloads appear in offset
order. `max.in.flight.requests.per.connection=1` keeps that true across
retries (without it a non-idempotent producer may legally reorder batches).

Stops on SIGTERM/SIGINT or after `--max-seconds`, then flushes for at most
`--flush-seconds`. Failed deliveries are counted on stderr, never written to
`--out`. It deliberately does not check anything itself.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from confluent_kafka import Producer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--out", required=True, help="file that receives one line per acknowledged record")
    ap.add_argument("--rate", type=int, default=2000, help="messages per second to offer (upper bound)")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="hard bound on producing time")
    ap.add_argument("--flush-seconds", type=float, default=45.0, help="bound on the final flush")
    args = ap.parse_args()

    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "client.id": "compat-acked-producer",
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 5,
            "max.in.flight.requests.per.connection": 1,
            # Long enough that messages queued while the broker is down are
            # retried after it restarts, short enough to finish in bounds.
            "message.timeout.ms": 40000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "queue.buffering.max.messages": 20000,
        }
    )

    acked = 0
    failed = 0
    out = open(args.out, "w", encoding="ascii")

    def on_delivery(err, msg):
        nonlocal acked, failed
        if err is not None:
            failed += 1
            if failed <= 5:
                print(f"delivery failed: {err}", file=sys.stderr, flush=True)
            return
        out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode('ascii')}\n")
        out.flush()
        acked += 1

    interval_s = 1.0 / args.rate
    deadline = time.monotonic() + args.max_seconds
    next_send = time.monotonic()
    seq = 0
    while not stop and time.monotonic() < deadline:
        now = time.monotonic()
        if now < next_send:
            producer.poll(min(next_send - now, 0.05))
            continue
        try:
            producer.produce(
                args.topic,
                value=f"seq-{seq:09d}".encode("ascii"),
                partition=seq % args.partitions,
                on_delivery=on_delivery,
            )
        except BufferError:
            producer.poll(0.05)
            continue
        seq += 1
        next_send += interval_s
        producer.poll(0)

    remaining = producer.flush(args.flush_seconds)
    out.close()
    print(
        f"acked_producer: produced={seq} acked={acked} failed={failed} unflushed={remaining}",
        file=sys.stderr,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
