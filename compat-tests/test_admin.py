"""The admin listener: /metrics scraped and parsed with Prometheus' own
OpenMetrics parser, /healthz and /readyz as Kubernetes' probes see them.

- Producing N records raises the produced-records counter by exactly N, and
  consuming them raises the fetched-records counter by N.
- In S3 mode, the broker's object-store request counters agree with the S3
  server's own count (s3s-fs logs each request it routes, by operation).
- /readyz turns 503 when the S3 server stops and 200 when it is back, while
  /healthz stays 200.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import S3Server
from confluent_kafka import TopicPartition

from tools.clients import consumer, create_topic, produce_all, producer, read_partitions, unique_topic

WAIT_S = 30.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(broker) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    status, text = get(f"{broker.admin_url}/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


OPERATIONS_DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def assert_documented(broker) -> None:
    """Every metric family /metrics declares has its row in docs/operations.md."""
    _, text = get(f"{broker.admin_url}/metrics")
    doc = OPERATIONS_DOC.read_text()
    names = set()
    for family in text_string_to_metric_families(text):
        suffix = {"counter": "_total", "histogram": ""}.get(family.type, "")
        names.add(family.name + suffix)
    undocumented = sorted(n for n in names if f"| `{n}` |" not in doc)
    assert not undocumented, f"metrics without a row in docs/operations.md: {undocumented}"


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(what: str, check, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_produced_and_fetched_records_are_counted_exactly(broker):
    topic = unique_topic("metrics")
    create_topic(broker.bootstrap, topic, partitions=2)
    before = scrape(broker)
    n = 1234
    p = producer(broker.bootstrap, **{"batch.num.messages": 100})
    produce_all(p, topic, [{"value": f"v{i}".encode(), "partition": i % 2} for i in range(n)])
    after = scrape(broker)
    produced = value(after, "lightstream_produced_records_total", topic=topic) - value(
        before, "lightstream_produced_records_total", topic=topic
    )
    assert produced == n
    assert value(after, "lightstream_produced_bytes_total", topic=topic) > 0
    requests = sum(
        v for (name, labels), v in after.items()
        if name == "lightstream_kafka_requests_total" and ("api", "Produce") in labels
    )
    assert requests > 0, sorted(k for k in after if k[0] == "lightstream_kafka_requests_total")

    read = read_partitions(broker.bootstrap, topic, [0, 1])
    assert sum(len(r) for r in read.values()) == n
    # The fetch that carried the last records may still be on its way out
    # when the consumer has them; the counter follows at once.
    wait_until(
        "the fetched-records counter",
        lambda: value(scrape(broker), "lightstream_fetched_records_total", topic=topic) >= n,
    )
    assert value(scrape(broker), "lightstream_fetched_records_total", topic=topic) == n

    # Consumer lag: a group commits where it is, then falls 10 behind.
    group = f"lag-{topic}"
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, n // 2), TopicPartition(topic, 1, n // 2)],
                 asynchronous=False)
    finally:
        c.close()
    produce_all(p, topic, [{"value": b"more", "partition": 0} for _ in range(10)])
    samples = scrape(broker)
    lag = {part: value(samples, "lightstream_consumer_group_lag", group=group, topic=topic, partition=str(part))
           for part in (0, 1)}
    assert lag == {0: 10, 1: 0}, lag

    status, body = get(f"{broker.admin_url}/healthz")
    assert (status, body.strip()) == (200, "ok")
    wait_until("/readyz 200", lambda: get(f"{broker.admin_url}/readyz")[0] == 200)
    assert value(scrape(broker), "lightstream_ready") == 1
    assert_documented(broker)


# s3s-fs operation names, as its router logs them, and the broker's kinds.
S3_OPERATIONS = {
    "PutObject": "put",
    "GetObject": "get",
    "ListObjectsV2": "list",
    "DeleteObject": "delete",
    "CreateMultipartUpload": "create_multipart",
    "UploadPart": "upload_part",
    "CompleteMultipartUpload": "complete_multipart",
    "AbortMultipartUpload": "abort_multipart",
    "ListMultipartUploads": "list_multipart",
}


@pytest.fixture
def counted_s3(tmp_path):
    """An s3s-fs of this test's own that logs every request it routes."""
    server = S3Server(tmp_path, env={"RUST_LOG": "s3s::ops=debug", "NO_COLOR": "1"})
    yield server
    server.stop()


def server_counts(server: S3Server) -> dict[str, int]:
    counts = {kind: 0 for kind in S3_OPERATIONS.values()}
    text = server.log_path.read_text(errors="replace")
    for op in re.findall(r"resolved route, op: (\w+)", text):
        kind = S3_OPERATIONS.get(op)
        assert kind is not None, f"an S3 operation the broker should not use: {op}"
        counts[kind] += 1
    return counts


def broker_counts(samples) -> dict[str, int]:
    return {
        kind: int(value(samples, "lightstream_object_store_requests_total", kind=kind))
        for kind in S3_OPERATIONS.values()
    }


def test_object_store_counters_match_the_s3_servers_own_count(broker_factory, counted_s3):
    b = broker_factory(env=counted_s3.broker_env("counted"))
    topic = unique_topic("metrics-s3")
    create_topic(b.bootstrap, topic, partitions=3)
    p = producer(b.bootstrap)
    produce_all(p, topic, [{"value": b"x" * 1000} for _ in range(3000)])
    read = read_partitions(b.bootstrap, topic, [0, 1, 2])
    assert sum(len(r) for r in read.values()) == 3000
    # Background work (the stale-upload sweep, GC listings) may add
    # requests at any time: the server's count must lie between two
    # scrapes taken around it, for every kind.
    first = broker_counts(scrape(b))
    on_server = server_counts(counted_s3)
    second = broker_counts(scrape(b))
    for kind in S3_OPERATIONS.values():
        assert first[kind] <= on_server[kind] <= second[kind], (kind, first, on_server, second)
    assert on_server["put"] + on_server["upload_part"] > 0, on_server
    samples = scrape(b)
    cost = value(samples, "lightstream_object_store_estimated_cost_total", topic=topic)
    assert cost > 0, "the topic's estimated request cost"
    assert_documented(b)


def test_readyz_follows_the_object_store_and_healthz_does_not(broker_factory, counted_s3):
    b = broker_factory(env=counted_s3.broker_env("ready"))
    ready = lambda: get(f"{b.admin_url}/readyz")  # noqa: E731
    wait_until("/readyz 200", lambda: ready()[0] == 200)
    counted_s3.stop()
    status, reason = wait_until("/readyz 503", lambda: (r := ready())[0] == 503 and r)
    assert "object store unreachable" in reason, reason
    assert get(f"{b.admin_url}/healthz")[0] == 200
    counted_s3.start()
    wait_until("/readyz 200 again", lambda: ready()[0] == 200)
    assert get(f"{b.admin_url}/healthz")[0] == 200
