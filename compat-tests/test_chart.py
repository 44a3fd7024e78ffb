"""The Helm chart and the binary agree.

For each values file the chart is tested with (charts/lightstream/ci/), the
rendered ConfigMap and the StatefulSet's container environment are handed
to `lightstream --check-config` exactly as a pod would see them (downward
API fields and Secret keys resolved, `$(VAR)` expanded): the binary must
accept them and read back what the chart meant.

Then a broker starts with exactly the rendered settings of the MinIO-style
values file, only the addresses swapped for local ones (the embedded
metadata file for ScyllaDB, s3s-fs for the object store, loopback ports and
host), and a client produces and consumes through it.

charts/test.sh (its own step of the test command) lints, validates and
schema-checks the chart; this file needs only its helm.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET
from tools.clients import create_topic, produce_all, producer, read_partitions, unique_topic
from tools.needs import missing

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "lightstream"
RELEASE = "lightstream"
NAMESPACE = "streaming"
POD_INDEX = 0


def helm() -> str:
    """charts/test.sh's helm (it installs it), or $HELM."""
    path = os.environ.get("HELM") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightstream" / "helm" / "helm"
    )
    if not os.access(path, os.X_OK):
        missing(f"helm is not installed at {path}: run bash charts/test.sh (the test command does)")
    return path


def render(values_file: str | None) -> list[dict]:
    args = [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values_file:
        args += ["-f", str(CHART / "ci" / values_file)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} documents"
    return found[0]


class Pod:
    """What the broker container of pod 0 sees: its settings file and env."""

    def __init__(self, docs: list[dict], tmp: Path):
        sts = one(docs, "StatefulSet")
        self.name = f"{sts['metadata']['name']}-{POD_INDEX}"
        container = sts["spec"]["template"]["spec"]["containers"][0]
        self.args = container["args"]
        self.settings_toml = one(docs, "ConfigMap")["data"]["lightstream.toml"]
        self.config_path = tmp / "lightstream.toml"
        self.config_path.write_text(self.settings_toml)
        secrets = {
            d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            for d in docs
            if d["kind"] == "Secret"
        }
        self.env: dict[str, str] = {}
        for var in container.get("env", []):
            self.env[var["name"]] = self._value(var, secrets)

    def _value(self, var: dict, secrets: dict) -> str:
        if "value" in var:
            # Kubernetes expands $(NAME) from variables defined before it.
            return re.sub(r"\$\((\w+)\)", lambda m: self.env.get(m.group(1), m.group(0)), var["value"])
        source = var["valueFrom"]
        if "fieldRef" in source:
            return {
                "metadata.labels['apps.kubernetes.io/pod-index']": str(POD_INDEX),
                "metadata.name": self.name,
                "metadata.namespace": NAMESPACE,
            }[source["fieldRef"]["fieldPath"]]
        ref = source["secretKeyRef"]
        # A Secret the user manages (existingSecret) is not rendered: any value will do.
        return secrets.get(ref["name"], {}).get(ref["key"], f"from-{ref['name']}-{ref['key']}")

    def check_config(self, binary: Path, extra_env: dict[str, str] | None = None) -> dict:
        """`lightstream <container args> --check-config`, with the pod's env only."""
        args = [a if a != "/etc/lightstream/lightstream.toml" else str(self.config_path) for a in self.args]
        assert str(self.config_path) in args, f"the container does not read the ConfigMap's file: {self.args}"
        env = {"PATH": os.environ["PATH"], **self.env, **(extra_env or {})}
        out = subprocess.run([str(binary), *args, "--check-config"], capture_output=True, text=True,
                             env=env, timeout=30)
        assert out.returncode == 0, f"the broker refused the chart's settings:\n{out.stderr}"
        assert "names no setting" not in out.stderr, out.stderr
        return tomllib.loads(out.stdout)


@pytest.mark.parametrize("values_file", [None, "aws-scylla-values.yaml", "minio-values.yaml",
                                         "autoscaling-values.yaml"])
def test_the_binary_accepts_what_the_chart_renders(lightstream_bin, tmp_path, values_file):
    docs = render(values_file)
    pod = Pod(docs, tmp_path)
    effective = pod.check_config(lightstream_bin)
    sts = one(docs, "StatefulSet")
    headless = sts["spec"]["serviceName"]
    assert effective["node_id"] == POD_INDEX
    assert effective["advertised_host"] == f"{pod.name}.{headless}.{NAMESPACE}.svc.cluster.local"
    assert effective["metadata_url"].startswith("scylla://")
    assert effective["storage_url"].startswith("s3://")
    ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert effective["listen"].endswith(f":{ports['kafka']}")
    assert effective["admin_listen"].endswith(f":{ports['admin']}")
    grace_ms = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] * 1000
    assert effective["shutdown_timeout_ms"] < grace_ms
    # Secrets never reach --check-config's output.
    assert effective.get("s3_secret_access_key", "") in ("", "****")


def test_a_broker_with_the_charts_settings_serves_clients(tmp_path, s3_server, broker_factory):
    docs = render("minio-values.yaml")
    pod = Pod(docs, tmp_path)
    settings = tomllib.loads(pod.settings_toml)
    prefix = settings["storage_url"].split("/", 3)[3]
    b = broker_factory(start=False)
    # Only the addresses change: local stores, loopback ports and host.
    settings.update({
        "listen": b.bootstrap,
        "admin_listen": f"127.0.0.1:{b.admin_port}",
        "data_dir": str(b.data_dir),
        "metadata_url": "",
        "s3_endpoint": f"http://127.0.0.1:{s3_server.port}",
        "storage_url": f"s3://{S3_BUCKET}/{prefix}",
    })
    for key in ("metadata_password_file", "metadata_username"):
        settings.pop(key, None)
    pod.config_path.write_text(to_toml(settings))
    env = {
        **pod.env,
        "LIGHTSTREAM_ADVERTISED_HOST": "127.0.0.1",
        "LIGHTSTREAM_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "LIGHTSTREAM_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }
    env.pop("LIGHTSTREAM_METADATA_USERNAME", None)
    effective = pod.check_config(b.binary, env)
    assert effective["s3_path_style"] is True
    assert effective["s3_checksum"] == "when_required"  # the values file's config section

    # The pod's environment and the chart's file, nothing of the test's.
    b.env = {"PATH": os.environ["PATH"], "NO_COLOR": "1", **env}
    b.settings_file = pod.config_path
    b.start()
    topic = unique_topic("chart")
    create_topic(b.bootstrap, topic, partitions=3)
    produce_all(producer(b.bootstrap), topic, [{"value": f"m{i}".encode()} for i in range(300)])
    read = read_partitions(b.bootstrap, topic, [0, 1, 2])
    assert sorted(r.value for rs in read.values() for r in rs) == sorted(f"m{i}".encode() for i in range(300))
    assert s3_server.objects(prefix), "objects under the chart's prefix"


def to_toml(settings: dict) -> str:
    """Flat settings as TOML: strings quoted, numbers and booleans bare."""
    def show(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"{k} = {show(v)}\n" for k, v in settings.items())
