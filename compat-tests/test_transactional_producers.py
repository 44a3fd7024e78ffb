"""Transactional producers against a broker that has no transactions yet.

Lightstream answers FindCoordinator for a transactional id with itself and
InitProducerId for it with TRANSACTIONAL_ID_AUTHORIZATION_FAILED: the one
code that librdkafka (kcat, confluent-kafka), kafka-python and KafkaJS all
treat as fatal at once (docs/protocol-traps.md). Before, the broker answered
COORDINATOR_NOT_AVAILABLE, which every client retried for seconds to
minutes. Each test here checks that the client fails within `PROMPT_S`, with
that code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from tools.clients import unique_topic
from tools.needs import JS, missing, node_with_kafkajs

# A prompt failure: well under any client's retry budget (kcat's 5 s
# metadata timeout, kafka-python's 60 s max_block_ms, confluent-kafka's
# 2 × transaction.timeout.ms).
PROMPT_S = 4.0
REFUSED = "Transactional Id authorization failed"


def test_kcat_transactional_producer_fails_at_once(broker):
    kcat = shutil.which("kcat")
    if kcat is None:
        missing("kcat is not installed (.ci/test-all.sh installs it)")
    started = time.monotonic()
    run = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-P", "-t", unique_topic("txn-kcat"), "-X", "transactional.id=txn-kcat"],
        input=b"one\n", capture_output=True, timeout=60,
    )
    took = time.monotonic() - started
    assert run.returncode != 0, run.stderr.decode()
    assert REFUSED in run.stderr.decode(), run.stderr.decode()
    assert took < PROMPT_S, f"kcat took {took:.1f}s to fail"


def test_confluent_kafka_init_transactions_fails_fatally_at_once(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "txn-confluent"})
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        p.init_transactions(30)
    took = time.monotonic() - started
    error: KafkaError = raised.value.args[0]
    assert error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error
    assert error.fatal(), error
    assert took < PROMPT_S, f"init_transactions took {took:.1f}s to fail"


def test_kafka_python_init_transactions_fails_at_once(broker):
    from kafka import KafkaProducer
    from kafka.errors import TransactionalIdAuthorizationFailedError

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-kafka-python")
    try:
        started = time.monotonic()
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            p.init_transactions()
        took = time.monotonic() - started
        assert took < PROMPT_S, f"init_transactions took {took:.1f}s to fail"
    finally:
        p.close(timeout=5)


def test_kafkajs_transaction_fails_at_once(broker):
    node = node_with_kafkajs()
    started = time.monotonic()
    run = subprocess.run(
        [node, str(JS / "transactional_producer.js"), broker.bootstrap, "txn-kafkajs"],
        capture_output=True, timeout=90,
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr.decode()[-4000:]
    seen = json.loads(run.stdout)
    assert seen.get("type") == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", seen
    assert seen["retriable"] is False, seen
    # Node's start-up and the connection count in `took` too.
    assert took < PROMPT_S + 2, f"the transaction took {took:.1f}s to fail"
