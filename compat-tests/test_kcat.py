"""kcat (librdkafka 2.0.2, Debian's build) against lightstream.

Covers: producing 100,000 keyed messages with headers through `kcat -P` in
every compression codec, with the topic auto-created by the producer's
Metadata request; reading them back with `kcat -C -e` and comparing every
key, value and header byte for byte, in offset order per partition; and
`kcat -L` listing the broker and the topic.

Debian's kcat links an older librdkafka than confluent-kafka bundles, so it
negotiates older API versions: that is the point of testing it separately.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict

import pytest

from tools.clients import unique_topic

MESSAGES = 100_000
PARTITIONS = 3
# kcat applies -H headers to every message of the run.
HEADERS = [("trace", "compat-kcat"), ("empty", "")]
KCAT_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed (bash .ci/test-all.sh installs it with apt)", pytrace=False)
    return path


def run_kcat(kcat: str, *args: str, input_path=None, timeout_s: float = KCAT_TIMEOUT_S) -> str:
    stdin = open(input_path, "rb") if input_path else subprocess.DEVNULL
    try:
        proc = subprocess.run(
            [kcat, *args],
            stdin=stdin,
            capture_output=True,
            timeout=timeout_s,
        )
    finally:
        if input_path:
            stdin.close()
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr.decode(errors='replace')[-4000:]}"
    )
    return proc.stdout.decode()


def message(i: int) -> tuple[str, str]:
    """Message i: a key shared by 1/1000 of the messages (so per-key order is
    checkable) and a value whose size varies from a few bytes to ~2 KiB, so
    batches mix small and large records."""
    key = f"key-{i % 1000:04d}"
    filler = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] * ((i * 7919) % 2048 if i % 50 == 0 else i % 40)
    return key, f"value-{i:06d}-{filler}"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_round_trips_100k_keyed_messages_with_headers(kcat, broker_factory, tmp_path, codec):
    broker = broker_factory("--num-partitions", str(PARTITIONS))
    topic = unique_topic(f"kcat-{codec}")

    sent = [message(i) for i in range(MESSAGES)]
    input_path = tmp_path / "input.txt"
    input_path.write_text("".join(f"{k}:{v}\n" for k, v in sent))

    header_args = [a for name, value in HEADERS for a in ("-H", f"{name}={value}")]
    run_kcat(
        kcat,
        "-P",
        "-b", broker.bootstrap,
        "-t", topic,
        "-K", ":",
        "-z", codec,
        *header_args,
        "-X", "acks=all",
        "-X", "topic.message.timeout.ms=120000",
        "-l", str(input_path),
    )

    out = run_kcat(
        kcat,
        "-C",
        "-b", broker.bootstrap,
        "-t", topic,
        "-o", "beginning",
        "-e",
        "-J",
    )
    received = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(received) == MESSAGES, f"consumed {len(received)} of {MESSAGES} messages"

    expected_headers = {name: value for name, value in HEADERS}
    by_partition: dict[int, list[dict]] = defaultdict(list)
    for m in received:
        assert m["topic"] == topic
        assert m.get("headers") is not None, f"message without headers: {m}"
        # -J renders headers as a flat [name, value, name, value, ...] list.
        hdrs = m["headers"]
        got_headers = dict(zip(hdrs[0::2], hdrs[1::2], strict=True))
        assert got_headers == expected_headers, f"headers differ at {m['partition']}/{m['offset']}"
        by_partition[m["partition"]].append(m)

    assert set(by_partition) <= set(range(PARTITIONS)), f"unexpected partitions {sorted(by_partition)}"
    index_of = {v: i for i, (_, v) in enumerate(sent)}
    key_partition: dict[str, int] = {}
    seen_values = set()
    for partition, msgs in by_partition.items():
        msgs.sort(key=lambda m: m["offset"])
        offsets = [m["offset"] for m in msgs]
        assert offsets == list(range(len(msgs))), f"partition {partition}: offsets not dense from 0"
        last_index = -1
        for m in msgs:
            key, value = m["key"], m["payload"]
            assert value in index_of, f"partition {partition} offset {m['offset']}: unexpected payload {value[:60]!r}"
            i = index_of[value]
            assert sent[i][0] == key, f"partition {partition} offset {m['offset']}: key {key!r} != {sent[i][0]!r}"
            assert i > last_index, f"partition {partition}: message {i} at offset {m['offset']} is out of send order"
            last_index = i
            assert key_partition.setdefault(key, partition) == partition, f"key {key!r} in two partitions"
            seen_values.add(value)
    assert len(seen_values) == MESSAGES, "some messages were duplicated or lost"


def test_kcat_metadata_lists_broker_and_topic(kcat, broker_factory, tmp_path):
    broker = broker_factory("--num-partitions", str(PARTITIONS))
    topic = unique_topic("kcat-list")
    # Produce one message so the topic exists (auto-created).
    one = tmp_path / "one.txt"
    one.write_text("hello\n")
    run_kcat(kcat, "-P", "-b", broker.bootstrap, "-t", topic, "-X", "acks=all", "-l", str(one), timeout_s=60)

    out = run_kcat(kcat, "-L", "-J", "-b", broker.bootstrap, "-t", topic, timeout_s=60)
    md = json.loads(out)
    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap], md["brokers"]
    broker_id = md["brokers"][0]["id"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, md
    t = topics[topic]
    assert "error" not in t, t
    assert sorted(p["partition"] for p in t["partitions"]) == list(range(PARTITIONS))
    for p in t["partitions"]:
        assert p["leader"] == broker_id, p
        assert "error" not in p, p

    # Without -t, the listing names every topic, ours included.
    everything = json.loads(run_kcat(kcat, "-L", "-J", "-b", broker.bootstrap, timeout_s=60))
    assert topic in {t["topic"] for t in everything["topics"]}
