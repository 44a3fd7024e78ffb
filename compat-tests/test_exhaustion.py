"""Memory and connection exhaustion against the real binary, measured from
/proc.

Each attack runs against a broker whose bounds are set small, while the
broker's resident memory (VmRSS) is sampled. What may grow is the bound of
the attack's kind plus a stated margin (the allocator's slack, socket
buffers' user-space copies, one batch over a fetch share). Meanwhile a
normal client keeps producing; its latency is printed (run pytest with -s
to see the figures; the note on issue 10 quotes them).
"""

from __future__ import annotations

import socket
import threading
import time

from tools import kafka_wire as kw
from tools.clients import create_topic, produce_all, producer, unique_topic

MIB = 1024 * 1024
# Bytes above the configured bound that RSS may reach: allocator slack and
# buffers that are not client data (measured: see docs/hostile-input.md).
MARGIN = 48 * MIB


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler:
    """Samples a process's VmRSS every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def produce_latencies(bootstrap: str, topic: str, count: int) -> list[float]:
    """Produces `count` small keyed records one at a time; seconds each took."""
    p = producer(bootstrap, **{"linger.ms": 0})
    out = []
    for i in range(count):
        started = time.monotonic()
        produce_all(p, topic, [{"key": f"k{i}", "value": f"normal-{i}"}], timeout_s=60)
        out.append(time.monotonic() - started)
    return out


def report(name: str, baseline: int, peak: int, bound: int, latencies: list[float] | None = None) -> None:
    line = (f"[exhaustion] {name}: RSS baseline {baseline / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, "
            f"growth {(peak - baseline) / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB + margin {MARGIN / MIB:.0f} MiB")
    if latencies:
        s = sorted(latencies)
        line += f"; normal produce p50 {s[len(s) // 2] * 1000:.0f} ms, max {s[-1] * 1000:.0f} ms"
    print(line)


def open_raw(bootstrap: str) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def warm_up(broker) -> tuple[str, int]:
    """A topic with a few records, so that the baseline includes a working broker."""
    topic = unique_topic("exhaust")
    create_topic(broker.bootstrap, topic, 1)
    produce_latencies(broker.bootstrap, topic, 5)
    return topic, rss(broker.proc.pid)


def test_half_sent_frames_hold_no_more_than_queued_max_request_bytes(broker_factory):
    bound = 64 * MIB
    broker = broker_factory(env={
        "LIGHTSTREAM_SOCKET_REQUEST_MAX_BYTES": str(40 * MIB),
        "LIGHTSTREAM_QUEUED_MAX_REQUEST_BYTES": str(bound),
        "LIGHTSTREAM_REQUEST_READ_TIMEOUT_MS": "3000",
    })
    topic, baseline = warm_up(broker)
    attackers = []
    chunk = b"\0" * MIB
    with RssSampler(broker.proc.pid) as sampler:
        # 12 connections each announce 39 MiB and send 30 MiB of it: 360 MiB
        # wanted against a 64 MiB bound.
        for _ in range(12):
            s = open_raw(broker.bootstrap)
            s.setblocking(False)
            s.send(kw.int32(39 * MIB))
            attackers.append([s, 30])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(left for _, left in attackers):
            for a in attackers:
                if a[1]:
                    try:
                        a[0].send(chunk)
                        a[1] -= 1
                    except (BlockingIOError, OSError):
                        pass
            time.sleep(0.01)
        latencies = produce_latencies(broker.bootstrap, topic, 5)
    for s, _ in attackers:
        s.close()
    report("half-sent frames", baseline, sampler.peak, bound, latencies)
    assert sampler.peak - baseline <= bound + MARGIN
    assert broker.running


def test_bare_length_prefixes_reserve_nothing(broker_factory):
    broker = broker_factory()
    topic, baseline = warm_up(broker)
    sockets = []
    with RssSampler(broker.proc.pid) as sampler:
        for _ in range(400):
            s = open_raw(broker.bootstrap)
            s.send(kw.int32(100 * MIB))  # Kafka's largest frame, announced
            sockets.append(s)
        latencies = produce_latencies(broker.bootstrap, topic, 5)
    with open(f"/proc/{broker.proc.pid}/status") as f:
        vm_size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    for s in sockets:
        s.close()
    report("bare length prefixes x400", baseline, sampler.peak, 0, latencies)
    # 400 x 100 MiB announced: nothing of it may be reserved, in RSS or in
    # address space (which grew to 50 GiB when prefixes reserved frames).
    assert sampler.peak - baseline <= MARGIN
    assert vm_size < 8 * 1024 * MIB, f"VmSize {vm_size / MIB:.0f} MiB"
    assert broker.running


def has_bytes(s: socket.socket) -> bool:
    try:
        return bool(s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def test_unread_fetch_answers_hold_no_more_than_the_response_buffer(broker_factory):
    bound = 64 * MIB
    broker = broker_factory(env={
        "LIGHTSTREAM_FETCH_RESPONSE_BUFFER_MAX_BYTES": str(bound),
        "LIGHTSTREAM_RESPONSE_WRITE_TIMEOUT_MS": "1500",
    })
    topic, _ = warm_up(broker)
    big = producer(broker.bootstrap, **{"linger.ms": 5, "batch.size": 900_000})
    produce_all(big, topic, [{"value": b"x" * 100_000} for _ in range(300)], timeout_s=60)  # ~30 MiB
    baseline = rss(broker.proc.pid)
    readers = []
    with RssSampler(broker.proc.pid) as sampler:
        # 10 clients ask for everything (2 GiB) and never read the answer:
        # 300 MiB of answers against a 64 MiB bound. Those that hold room
        # are closed after response_write_timeout_ms, and the next get it.
        for i in range(10):
            s = open_raw(broker.bootstrap)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.send(kw.fetch_request_v4(i, topic, 0, 0, max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1))
            readers.append(s)
        latencies = produce_latencies(broker.bootstrap, topic, 5)
        deadline = time.monotonic() + 60
        while not all(has_bytes(s) for s in readers):
            assert time.monotonic() < deadline, "fetches were never answered"
            time.sleep(0.05)
    for s in readers:
        s.close()
    report("unread fetch answers x10", baseline, sampler.peak, bound, latencies)
    assert sampler.peak - baseline <= bound + MARGIN
    assert broker.running


def test_idle_and_slow_connections_are_closed(broker_factory):
    broker = broker_factory(env={
        "LIGHTSTREAM_CONNECTIONS_MAX_IDLE_MS": "1000",
        "LIGHTSTREAM_REQUEST_READ_TIMEOUT_MS": "1500",
    })
    idle = [kw.Connection(broker.bootstrap) for _ in range(20)]
    slow = kw.Connection(broker.bootstrap)
    slow.send(kw.int32(100))  # a frame of 100 bytes, then one byte at a time
    started = time.monotonic()
    closed_at = None
    for _ in range(100):
        try:
            slow.send(b"\0")
        except OSError:
            closed_at = time.monotonic() - started
            break
        if slow.wait_closed(0.1):
            closed_at = time.monotonic() - started
            break
    assert closed_at is not None, "a frame trickling in was never closed"
    assert all(c.wait_closed(10) for c in idle), "idle connections were left open"
    print(f"[exhaustion] slowloris closed after {closed_at:.1f} s (request_read_timeout_ms=1500)")
    # And a client that talks is served.
    with kw.Connection(broker.bootstrap) as conn:
        resp = kw.parse_api_versions_response_v0(conn.request(kw.api_versions_request_v0(5)))
    assert resp.error_code == kw.ERROR_NONE


def served_connection(bootstrap: str, timeout_s: float = 10) -> kw.Connection:
    """A connection the broker answers. The fixture's readiness probe (and a
    connection just closed) may still hold a place until the broker sees it
    go, so a refused one is retried until the bound."""
    deadline = time.monotonic() + timeout_s
    while True:
        conn = kw.Connection(bootstrap)
        try:
            resp = kw.parse_api_versions_response_v0(conn.request(kw.api_versions_request_v0(1)))
            assert resp.error_code == kw.ERROR_NONE
            return conn
        except kw.ConnectionClosed:
            conn.close()
            assert time.monotonic() < deadline, "no place was free for a connection"
            time.sleep(0.05)


def test_connections_beyond_max_connections_per_ip_are_closed(broker_factory):
    broker = broker_factory(env={"LIGHTSTREAM_MAX_CONNECTIONS_PER_IP": "3"})
    held = [served_connection(broker.bootstrap) for _ in range(3)]
    extra = kw.Connection(broker.bootstrap)
    assert extra.wait_closed(10), "a fourth connection from 127.0.0.1 was kept"
    held[0].close()
    # Its place is given back once the broker sees the close.
    served_connection(broker.bootstrap).close()
    for c in held[1:]:
        c.close()


def zstd_bomb_batch() -> bytes:
    """One keyed record whose value is 200 MiB of zeros, zstd-compressed to
    a few KiB: refused at the 128 MiB decompression bound."""
    value = b"\0" * (200 * MIB)
    body = kw.int8(0) + kw.varlong(0) + kw.varint(0) + kw.varint(1) + b"k" + kw.varint(len(value)) + value + kw.varint(0)
    return kw.encode_raw_batch(kw.compress(kw.CODEC_ZSTD, kw.varint(len(body)) + body), 1, kw.CODEC_ZSTD)


def test_a_zip_bomb_flood_costs_the_sender_not_other_producers(broker_factory):
    broker = broker_factory()
    topic = unique_topic("compacted")
    create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": "compact"})
    quiet = produce_latencies(broker.bootstrap, topic, 10)
    bomb = zstd_bomb_batch()
    assert len(bomb) < 64 * 1024, len(bomb)
    stop = threading.Event()
    refused = []

    def flood() -> None:
        with kw.Connection(broker.bootstrap, timeout_s=60) as conn:
            while not stop.is_set():
                payload = conn.request(kw.produce_request_v3(9, topic, 0, bomb))
                _, [result] = kw.parse_produce_response_v3(payload)
                refused.append(result.error_code)

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(3)]
    for t in flooders:
        t.start()
    deadline = time.monotonic() + 10
    while len(refused) < 6:
        assert time.monotonic() < deadline, "no bomb was answered"
        time.sleep(0.01)
    under_attack = produce_latencies(broker.bootstrap, topic, 20)
    stop.set()
    for t in flooders:
        t.join(timeout=60)
    assert set(refused) == {kw.ERROR_MESSAGE_TOO_LARGE}, set(refused)
    q, a = sorted(quiet), sorted(under_attack)
    print(f"[exhaustion] zstd bomb flood x3 connections ({len(refused)} bombs refused): normal produce "
          f"p50 {q[len(q) // 2] * 1000:.0f} -> {a[len(a) // 2] * 1000:.0f} ms, "
          f"max {q[-1] * 1000:.0f} -> {a[-1] * 1000:.0f} ms")
    # Before bombs went to a bounded pool this was 4-6 s; the bound leaves
    # room for a noisy two-core machine.
    assert a[len(a) // 2] < 0.5 and a[-1] < 2.0
