"""Cross-checks one rendered Lightstream chart (the output of `helm template`).

kubernetes-validate checks each document against its API schema; this checks
what no schema can: that the documents agree with each other and with what
the broker reads. The shutdown timeout fits the grace period, the TOML
parses, every name the StatefulSet references (Service, Secret keys, mounted
files, probe ports) exists, selectors select the pods, and the
ServiceMonitor scrapes the admin port of the headless Service only.

Usage: check_rendered.py RENDERED.yaml LABEL
Prints one line per check ("ok" or "FAIL"); exits 1 if any failed.
"""

import re
import sys
import tomllib

import yaml

CONFIG_PATH = "/etc/lightstream/lightstream.toml"
# Must match the margin in _helpers.tpl (lightstream.shutdownTimeoutMs).
SHUTDOWN_MARGIN_MS = 5000
MIN_SHUTDOWN_TIMEOUT_MS = 1000

# From the monitoring.coreos.com/v1 ServiceMonitor CRD: the spec fields and
# endpoint fields it defines (a subset that covers what a chart would set),
# and its Duration pattern.
SERVICE_MONITOR_SPEC_FIELDS = {
    "selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
    "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata",
}
SERVICE_MONITOR_ENDPOINT_FIELDS = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
    "tlsConfig", "authorization", "basicAuth", "oauth2", "bearerTokenSecret",
    "followRedirects", "enableHttp2", "filterRunning", "proxyUrl",
}
CRD_DURATION = r"(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)"


class Checks:
    def __init__(self, label):
        self.label = label
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            print(f"ok    {self.label}: {name}")
        else:
            self.failed += 1
            print(f"FAIL  {self.label}: {name}" + (f": {detail}" if detail else ""))


def one(docs, kind, pred=lambda d: True):
    found = [d for d in docs if d["kind"] == kind and pred(d)]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def main(path, label):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    c = Checks(label)
    sts = one(docs, "StatefulSet")
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    env_order = [e["name"] for e in container.get("env", [])]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    services = [d for d in docs if d["kind"] == "Service"]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}

    # The settings file: parses as TOML, and is the file the broker is told to read.
    configmap = one(docs, "ConfigMap")
    try:
        settings = tomllib.loads(configmap["data"]["lightstream.toml"])
        c.check("lightstream.toml parses as TOML", True)
    except tomllib.TOMLDecodeError as e:
        c.check("lightstream.toml parses as TOML", False, str(e))
        settings = {}
    c.check(
        "broker runs with --config " + CONFIG_PATH,
        container.get("args") == ["--config", CONFIG_PATH],
        repr(container.get("args")),
    )
    config_mount = mounts.get(CONFIG_PATH, {})
    config_volume = volumes.get(config_mount.get("name"), {})
    c.check(
        "the ConfigMap is mounted at the config path",
        config_volume.get("configMap", {}).get("name") == configmap["metadata"]["name"]
        and config_mount.get("subPath") == "lightstream.toml",
    )
    c.check(
        "pods carry the checksum/config annotation",
        len(pod["metadata"].get("annotations", {}).get("checksum/config", "")) == 64,
    )
    expected_types = {
        "listen": str, "admin_listen": str, "data_dir": str, "storage_url": str,
        "metadata_url": str, "s3_region": str, "s3_path_style": bool,
        "shutdown_timeout_ms": int, "log_format": str,
    }
    wrong = [k for k, t in expected_types.items() if type(settings.get(k)) is not t]
    c.check("chart-computed settings present with TOML types", not wrong, f"{wrong}")

    # Shutdown: the broker's own timeout must end before the kubelet's SIGKILL.
    grace_s = spec["terminationGracePeriodSeconds"]
    expected = max(MIN_SHUTDOWN_TIMEOUT_MS, grace_s * 1000 - SHUTDOWN_MARGIN_MS)
    got = settings.get("shutdown_timeout_ms")
    c.check(
        f"shutdown_timeout_ms {got} fits terminationGracePeriodSeconds {grace_s}",
        got == expected and got < grace_s * 1000,
        f"expected {expected}",
    )

    # Ports and probes: the listen addresses, container ports and probes agree.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    c.check(
        "listen / admin_listen match the container ports",
        settings.get("listen") == f"0.0.0.0:{ports.get('kafka')}"
        and settings.get("admin_listen") == f"0.0.0.0:{ports.get('admin')}",
    )
    probes = {
        "startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz",
    }
    bad = [
        p for p, path in probes.items()
        if container.get(p, {}).get("httpGet") != {"path": path, "port": "admin"}
    ]
    c.check("probes: /healthz and /readyz on the admin port", not bad, f"{bad}")
    c.check(
        "data_dir is an emptyDir mount",
        "emptyDir" in volumes.get(mounts.get(settings.get("data_dir"), {}).get("name"), {})
        and "volumeClaimTemplates" not in sts["spec"],
    )

    # Identity: node id from the pod index, advertised host under the headless Service.
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    c.check(
        "serviceName is the headless Service (publishNotReadyAddresses)",
        len(headless) == 1
        and headless[0]["metadata"]["name"] == sts["spec"]["serviceName"]
        and headless[0]["spec"].get("publishNotReadyAddresses") is True,
    )
    c.check(
        "no service-link variables (they would read as LIGHTSTREAM_* settings)",
        spec.get("enableServiceLinks") is False,
    )
    node_id = env.get("LIGHTSTREAM_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
    c.check(
        "LIGHTSTREAM_NODE_ID from the pod-index label",
        node_id.get("fieldPath") == "metadata.labels['apps.kubernetes.io/pod-index']",
    )
    advertised = env.get("LIGHTSTREAM_ADVERTISED_HOST", {}).get("value", "")
    c.check(
        "LIGHTSTREAM_ADVERTISED_HOST is <pod>.<headless>.<namespace>.svc.<domain>",
        advertised.startswith(f"$(POD_NAME).{sts['spec']['serviceName']}.$(POD_NAMESPACE).svc.")
        and env_order.index("POD_NAME") < env_order.index("LIGHTSTREAM_ADVERTISED_HOST")
        and env_order.index("POD_NAMESPACE") < env_order.index("LIGHTSTREAM_ADVERTISED_HOST"),
        advertised,
    )

    # Secrets: every key the pod reads exists in the Secret the chart rendered
    # (Secrets named in values but not rendered are the user's own).
    missing = []
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] in secrets and ref["key"] not in secrets[ref["name"]]["data"]:
            missing.append(f"{e['name']}→{ref['name']}/{ref['key']}")
    for v in volumes.values():
        s = v.get("secret")
        if s and s["secretName"] in secrets:
            missing += [
                f"{v['name']}→{s['secretName']}/{i['key']}"
                for i in s.get("items", []) if i["key"] not in secrets[s["secretName"]]["data"]
            ]
    c.check("secret references name keys that exist", not missing, f"{missing}")
    password_file = settings.get("metadata_password_file")
    if password_file:
        directory, _, name = password_file.rpartition("/")
        mount = mounts.get(directory, {})
        items = volumes.get(mount.get("name"), {}).get("secret", {}).get("items", [])
        c.check(
            "metadata_password_file is a mounted secret key",
            any(i["path"] == name for i in items),
        )
    c.check(
        "no credential in the ConfigMap",
        not {"metadata_password", "s3_access_key_id", "s3_secret_access_key"} & settings.keys(),
    )

    # Selectors: Services, PDB and the StatefulSet select the pods.
    pod_labels = pod["metadata"]["labels"]
    selectors = [s["spec"]["selector"] for s in services]
    selectors.append(sts["spec"]["selector"]["matchLabels"])
    selectors += [d["spec"]["selector"]["matchLabels"] for d in docs
                  if d["kind"] == "PodDisruptionBudget"]
    c.check("every selector selects the broker pods",
            all(selects(s, pod_labels) for s in selectors))

    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if hpas:
        c.check(
            "HPA scales the StatefulSet, which leaves replicas to it",
            hpas[0]["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"]
            and "replicas" not in sts["spec"],
        )

    # ServiceMonitor: a CRD, so kubernetes-validate has no schema for it.
    # Its fields are checked against the CRD's (prometheus-operator v1) here.
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if monitors:
        m = monitors[0]
        endpoint_keys = {k for e in m["spec"]["endpoints"] for k in e}
        durations = [e.get(k) for e in m["spec"]["endpoints"] for k in ("interval", "scrapeTimeout")]
        c.check(
            "ServiceMonitor uses only fields of the v1 CRD, durations in its format",
            set(m["spec"]) <= SERVICE_MONITOR_SPEC_FIELDS
            and endpoint_keys <= SERVICE_MONITOR_ENDPOINT_FIELDS
            and all(d is None or re.fullmatch(CRD_DURATION, d) for d in durations),
            f"{set(m['spec']) - SERVICE_MONITOR_SPEC_FIELDS} {endpoint_keys - SERVICE_MONITOR_ENDPOINT_FIELDS}",
        )
        chosen = [s for s in services if selects(m["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        endpoints = m["spec"]["endpoints"]
        port_names = {p["name"] for s in chosen for p in s["spec"]["ports"]}
        c.check(
            "ServiceMonitor scrapes the headless Service's admin port at /metrics",
            m["apiVersion"] == "monitoring.coreos.com/v1"
            and [s["metadata"]["name"] for s in chosen] == [sts["spec"]["serviceName"]]
            and all(e["port"] in port_names and e["path"] == "/metrics" for e in endpoints),
        )
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
