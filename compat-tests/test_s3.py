"""The broker with its objects in S3 (s3s-fs on a loopback port, a real S3
server that checks signatures, checksums and conditional writes).

Besides the tests marked `also_s3` elsewhere (confluent-kafka round trips,
graceful and SIGKILL restarts, idempotent producers through restarts, which
run once per mode), this file checks what only S3 mode has: objects land in
the bucket under the broker's prefix, and a consumer that keeps up is served
from the tail cache with no GET at all (the broker's "s3 stats" log line).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from tools.clients import create_topic, unique_topic


def s3_stats(broker) -> dict[str, int]:
    """The newest "s3 stats" line of the broker's log, as numbers."""
    lines = [line for line in broker.log_path.read_text().splitlines() if "s3 stats" in line]
    assert lines, "no s3 stats line in the broker log"
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([0-9.]+)", lines[-1]) if not k.endswith("_ms")}


@pytest.mark.parametrize("broker", ["s3"], indirect=True)
def test_objects_go_to_s3_and_a_caught_up_consumer_makes_no_get(broker):
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed (bash .ci/test-all.sh installs it)"
    topic = unique_topic("s3-kcat")
    create_topic(broker.bootstrap, topic, partitions=3)
    payload = "\n".join(f"m{i}" for i in range(20000)) + "\n"
    subprocess.run([kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-z", "zstd"],
                   input=payload.encode(), check=True, timeout=60)
    out = subprocess.run([kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q"],
                         capture_output=True, check=True, timeout=60)
    assert sorted(out.stdout.decode().split()) == sorted(f"m{i}" for i in range(20000))
    objects = broker.s3.objects(broker.s3_prefix)
    assert objects, f"no objects under {broker.s3_prefix} in the bucket"
    time.sleep(1.0)  # the next stats line
    stats = s3_stats(broker)
    assert stats["put_requests"] >= len(objects) > 0
    assert stats["put_errors"] == 0
    assert stats["get_requests"] == 0, f"a caught-up consumer made GETs: {stats}"
