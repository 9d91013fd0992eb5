"""Tests of the berth Helm chart, rendered by Helm's own engine.

helm-python-sdk binds Helm's Go SDK (libhelm_c over helm.sh/helm/v4):
``helm_python.lint`` is ``helm lint``; ``Chart.render`` coalesces the values
with values.yaml, validates them against values.schema.json and runs
``engine.Render`` exactly as ``helm template`` does (offline: no cluster).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1]
RELEASE = "berth"
NAMESPACE = "kube-system"

# The berth.yaml contract (DESIGN.md, "Configuration contract").
CONTRACT_KEYS = {
    "root", "state", "log_level", "log_format", "cri", "docker", "metrics",
    "runtime", "cni", "registries",
}

# host path -> (mountPath in the container, mountPropagation, readOnly)
REQUIRED_HOST_PATHS = {
    "/var/lib/berth": ("/var/lib/berth", "Bidirectional", False),
    "/run/berth": ("/run/berth", "Bidirectional", False),
    "/etc/cni/net.d": ("/etc/cni/net.d", None, False),
    "/opt/cni/bin": ("/opt/cni/bin", None, False),
    "/var/log/pods": ("/var/log/pods", None, False),
    "/sys/fs/cgroup": ("/sys/fs/cgroup", "HostToContainer", False),
    "/lib/modules": ("/lib/modules", None, True),
}

CUSTOM_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/berth/berthd", "tag": "v9.9.9",
              "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "hostNetwork": False,
    "dnsPolicy": "ClusterFirst",
    "installCNIPlugins": False,
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                  "limits": {"memory": "1Gi"}},
    "nodeSelector": {"berth.example/runtime": "yes"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "runtime",
                     "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
    "priorityClassName": "",
    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "20%"}},
    "podAnnotations": {"example.com/team": "runtime"},
    "podLabels": {"tier": "node"},
    "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
    "extraVolumes": [{"name": "docker-tls", "secret": {"secretName": "berth-docker-tls"}}],
    "extraVolumeMounts": [{"name": "docker-tls", "mountPath": "/etc/berth/tls",
                           "readOnly": True}],
    "livenessProbe": {"enabled": False},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"},
                       "interval": "15s"},
    "config": {
        "root": "/data/berth",
        "log_level": "debug",
        "log_format": "json",
        "docker": {"tcp": "0.0.0.0:2376",
                   "tls": {"cert": "/etc/berth/tls/tls.crt", "key": "/etc/berth/tls/tls.key",
                           "ca": "/etc/berth/tls/ca.crt"}},
        "metrics": {"address": ":9400"},
        "runtime": {"cgroup_driver": "systemd"},
        "registries": {
            "docker.io": {"mirrors": ["https://mirror.example"]},
            "127.0.0.1:5000": {"insecure": True},
        },
    },
}


# ----------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


class Rendered:
    """The manifests of one render, parsed."""

    def __init__(self, manifests: dict[str, str]):
        self.raw = manifests
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc is not None:
                    assert isinstance(doc, dict), f"{path}: not a mapping"
                    self.objects.append(doc)

    @property
    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def one(self, kind: str) -> dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def template(self, name: str) -> str:
        return self.raw[f"berth/templates/{name}"]


def render(chart, values: dict[str, Any] | None = None, *, name: str = RELEASE) -> Rendered:
    return Rendered(chart.render(values, name=name, namespace=NAMESPACE))


def berth_yaml(r: Rendered) -> dict[str, Any]:
    config = yaml.safe_load(r.one("ConfigMap")["data"]["berth.yaml"])
    assert isinstance(config, dict)
    return config


def pod_spec(r: Rendered) -> dict[str, Any]:
    return r.one("DaemonSet")["spec"]["template"]["spec"]


def berthd(r: Rendered) -> dict[str, Any]:
    (container,) = pod_spec(r)["containers"]
    assert container["name"] == "berthd"
    return container


def host_mounts(r: Rendered) -> dict[str, dict[str, Any]]:
    """host path -> the volumeMount of berthd that mounts it."""
    spec = pod_spec(r)
    by_volume = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    return {by_volume[m["name"]]: m for m in berthd(r)["volumeMounts"] if m["name"] in by_volume}


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.fixture(scope="module")
def default(chart) -> Rendered:
    return render(chart)


@pytest.fixture(scope="module")
def custom(chart) -> Rendered:
    return render(chart, copy.deepcopy(CUSTOM_VALUES))


# ---------------------------------------------------------------- the chart

def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "berth"
    assert meta["type"] == "application"
    assert chart.schema is not None and chart.schema["additionalProperties"] is False


@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_helm_lint_is_clean(values):
    report = helm.lint(CHART_DIR, copy.deepcopy(values), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 2 = warning, 3 = error; only infos (e.g. "icon is recommended") remain.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_schema_violation():
    report = helm.lint(CHART_DIR, {"replicaCount": 3}, namespace=NAMESPACE)
    assert report["errors"], report
    assert any("replicaCount" in e for e in report["errors"])


def test_defaults_satisfy_schema(chart):
    chart.validate_schema(chart.values)


# ------------------------------------------------------- default values

def test_default_kinds(default):
    assert default.kinds == ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"]
    assert "ServiceMonitor" not in default.kinds


def test_default_names_and_labels(default):
    for obj in default.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE
        assert meta["name"].startswith("berth")
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "berth"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "berth-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_default_daemonset(default):
    ds = default.one("DaemonSet")
    assert ds["apiVersion"] == "apps/v1"
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "berth", "app.kubernetes.io/instance": RELEASE}
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}

    spec = pod_spec(default)
    assert spec["hostPID"] is True
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "Default"
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert "affinity" not in spec
    assert "imagePullSecrets" not in spec
    assert spec["serviceAccountName"] == "berth"
    assert spec["automountServiceAccountToken"] is False

    c = berthd(default)
    assert c["image"] == "berthd:0.1.0"  # tag defaults to appVersion
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["--config", "/etc/berth/berth.yaml"]
    assert c["securityContext"]["privileged"] is True
    assert c["ports"] == [{"name": "metrics", "containerPort": 9323, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert "limits" not in c["resources"]
    assert env(c) == {"BERTH_INSTALL_CNI_PLUGINS": "true", "CNI_BIN_DIR": "/opt/cni/bin"}


def test_default_config_is_mounted(default):
    spec = pod_spec(default)
    (config_volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    assert config_volume["configMap"]["name"] == default.one("ConfigMap")["metadata"]["name"]
    (mount,) = [m for m in berthd(default)["volumeMounts"] if m["name"] == "config"]
    assert mount == {"name": "config", "mountPath": "/etc/berth", "readOnly": True}


@pytest.mark.parametrize("host_path", sorted(REQUIRED_HOST_PATHS))
def test_default_host_path_mounts(default, host_path):
    mounts = host_mounts(default)
    assert host_path in mounts, f"{host_path} is not mounted"
    mount = mounts[host_path]
    mount_path, propagation, read_only = REQUIRED_HOST_PATHS[host_path]
    assert mount["mountPath"] == mount_path
    assert mount.get("mountPropagation") == propagation
    assert bool(mount.get("readOnly", False)) is read_only


def test_default_host_path_volumes_are_unique(default):
    mounts = [m["mountPath"] for m in berthd(default)["volumeMounts"]]
    assert len(mounts) == len(set(mounts))
    names = [v["name"] for v in pod_spec(default)["volumes"]]
    assert len(names) == len(set(names))


def test_default_berth_yaml(chart, default):
    config = berth_yaml(default)
    assert set(config) <= CONTRACT_KEYS
    assert config["root"] == "/var/lib/berth"
    assert config["state"] == "/run/berth"
    assert config["log_level"] == "info"
    assert config["log_format"] == "text"
    assert config["cri"] == {"socket": "/run/berth/berth.sock",
                             "streaming_address": "127.0.0.1:10010"}
    assert config["docker"]["socket"] == "/run/berth/docker.sock"
    assert config["docker"].get("tcp") is None  # Helm drops the null: daemon default
    assert config["metrics"] == {"address": "0.0.0.0:9323"}
    assert config["runtime"] == {
        "default_handler": "crun",
        "handlers": {"crun": {"path": "/usr/bin/crun"}, "runc": {"path": "/usr/sbin/runc"}},
        "cgroup_driver": "cgroupfs",
    }
    assert config["cni"] == {"conf_dir": "/etc/cni/net.d",
                             "bin_dirs": ["/opt/cni/bin", "/usr/lib/cni"]}
    assert config["registries"] == {}


def test_checksum_annotation_tracks_config(chart, default, custom):
    def checksum(r: Rendered) -> str:
        return r.one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    # Helm's sha256sum of the rendered configmap.yaml template.
    assert checksum(default) == hashlib.sha256(default.template("configmap.yaml").encode()).hexdigest()
    assert checksum(custom) == hashlib.sha256(custom.template("configmap.yaml").encode()).hexdigest()
    assert checksum(default) != checksum(custom)
    debug = render(chart, {"config": {"log_level": "debug"}})
    assert checksum(debug) != checksum(default)
    # Values outside configmap.yaml do not roll the pods by themselves.
    resized = render(chart, {"resources": {"requests": {"cpu": "1"}}})
    assert checksum(resized) == checksum(default)


def test_default_metrics_service(default):
    svc = default.one("Service")
    assert svc["metadata"]["name"] == "berth-metrics"
    assert svc["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9323",
        "prometheus.io/path": "/metrics",
    }
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9323, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = default.one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_default_service_account(default):
    sa = default.one("ServiceAccount")
    assert sa["metadata"]["name"] == pod_spec(default)["serviceAccountName"]
    assert sa["automountServiceAccountToken"] is False


def test_default_notes(default):
    assert "unix:///run/berth/berth.sock" in default.notes
    assert "9323/metrics" in default.notes
    assert "WARNING: hostNetwork is false" not in default.notes


# ------------------------------------------------------- non-default values

def test_custom_kinds(custom):
    assert custom.kinds == ["ConfigMap", "DaemonSet", "Service", "ServiceAccount",
                            "ServiceMonitor"]


def test_custom_daemonset(custom):
    spec = pod_spec(custom)
    assert spec["hostPID"] is True  # always: the runtime must see every process
    assert spec["hostNetwork"] is False
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert "priorityClassName" not in spec
    # Helm merges maps with values.yaml: the default OS selector stays.
    assert spec["nodeSelector"] == {"berth.example/runtime": "yes", "kubernetes.io/os": "linux"}
    assert spec["tolerations"] == CUSTOM_VALUES["tolerations"]
    assert spec["affinity"] == CUSTOM_VALUES["affinity"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert custom.one("DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"] == {
        "maxUnavailable": "20%"}

    meta = custom.one("DaemonSet")["spec"]["template"]["metadata"]
    assert meta["annotations"]["example.com/team"] == "runtime"
    assert "checksum/config" in meta["annotations"]
    assert meta["labels"]["tier"] == "node"

    c = berthd(custom)
    assert c["image"] == "registry.example/berth/berthd:v9.9.9"
    assert c["imagePullPolicy"] == "Always"
    assert c["securityContext"]["privileged"] is True
    assert c["resources"] == CUSTOM_VALUES["resources"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert "livenessProbe" not in c
    assert c["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert env(c) == {"BERTH_INSTALL_CNI_PLUGINS": "false", "CNI_BIN_DIR": "/opt/cni/bin",
                      "RUST_BACKTRACE": "1"}
    assert {"name": "docker-tls", "mountPath": "/etc/berth/tls", "readOnly": True} in c["volumeMounts"]
    assert {"name": "docker-tls", "secret": {"secretName": "berth-docker-tls"}} in spec["volumes"]


def test_custom_root_moves_host_path(custom):
    mounts = host_mounts(custom)
    assert "/var/lib/berth" not in mounts
    assert mounts["/data/berth"]["mountPath"] == "/data/berth"
    assert mounts["/data/berth"]["mountPropagation"] == "Bidirectional"
    assert mounts["/run/berth"]["mountPropagation"] == "Bidirectional"


def test_custom_berth_yaml(custom):
    config = berth_yaml(custom)
    assert set(config) <= CONTRACT_KEYS
    assert config["root"] == "/data/berth"
    assert config["state"] == "/run/berth"  # default kept beside the overrides
    assert config["log_level"] == "debug"
    assert config["log_format"] == "json"
    assert config["docker"] == {
        "socket": "/run/berth/docker.sock",
        "tcp": "0.0.0.0:2376",
        "tls": {"cert": "/etc/berth/tls/tls.crt", "key": "/etc/berth/tls/tls.key",
                "ca": "/etc/berth/tls/ca.crt"},
    }
    assert config["metrics"] == {"address": ":9400"}
    assert config["runtime"]["cgroup_driver"] == "systemd"
    assert config["runtime"]["default_handler"] == "crun"
    assert config["registries"] == {
        "docker.io": {"mirrors": ["https://mirror.example"]},
        "127.0.0.1:5000": {"insecure": True},
    }


def test_custom_service_and_monitor(custom):
    svc = custom.one("Service")
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == "9400"
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert svc["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert svc["spec"]["ports"][0]["port"] == 9400

    sm = custom.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"


def test_custom_notes_warn_about_pod_network(custom):
    assert "WARNING: hostNetwork is false" in custom.notes


def test_optional_objects_can_be_disabled(chart):
    r = render(chart, {"service": {"enabled": False}, "serviceAccount": {"create": False}})
    assert r.kinds == ["ConfigMap", "DaemonSet"]
    assert pod_spec(r)["serviceAccountName"] == "default"


def test_fullname(chart):
    assert render(chart, name="node").one("DaemonSet")["metadata"]["name"] == "node-berth"
    assert render(chart, name="berth-prod").one("DaemonSet")["metadata"]["name"] == "berth-prod"
    r = render(chart, {"fullnameOverride": "runtime"}, name="node")
    assert r.one("DaemonSet")["metadata"]["name"] == "runtime"
    assert r.one("Service")["metadata"]["name"] == "runtime-metrics"


def test_null_removes_a_default(chart):
    r = render(chart, {"nodeSelector": {"kubernetes.io/os": None},
                       "config": {"runtime": {"handlers": {"runc": None}}}})
    assert "nodeSelector" not in pod_spec(r)
    assert berth_yaml(r)["runtime"]["handlers"] == {"crun": {"path": "/usr/bin/crun"}}


def test_image_digest_wins(chart):
    digest = "sha256:" + "ab" * 32
    r = render(chart, {"image": {"tag": "v1", "digest": digest}})
    assert berthd(r)["image"] == f"berthd@{digest}"


# -------------------------------------------------- values that are refused

@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"replicaCount": 2}, "replicaCount"),                        # unknown top-level key
        ({"hostNetwork": "yes"}, "/hostNetwork"),                      # wrong type
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"registry": "x"}}, "registry"),
        ({"image": {"tag": 1.2}}, "/image/tag"),
        ({"resources": "lots"}, "/resources"),
        ({"tolerations": {"operator": "Exists"}}, "/tolerations"),
        ({"config": {"log_level": "loud"}}, "/config/log_level"),
        ({"config": {"log_format": "xml"}}, "/config/log_format"),
        ({"config": {"root": "relative/dir"}}, "/config/root"),
        ({"config": {"unknown_key": 1}}, "unknown_key"),
        ({"config": {"cri": {"sock": "/x"}}}, "sock"),
        ({"config": {"metrics": {"address": "9323"}}}, "/config/metrics/address"),
        ({"config": {"runtime": {"cgroup_driver": "cgroupv3"}}}, "/config/runtime/cgroup_driver"),
        ({"config": {"runtime": {"handlers": {"youki": {}}}}}, "/config/runtime/handlers/youki"),
        ({"config": {"cni": {"bin_dirs": "/opt/cni/bin"}}}, "/config/cni/bin_dirs"),
        ({"config": {"docker": {"tcp": "0.0.0.0:2376"}}}, "/config/docker/tls"),   # TCP needs TLS
        ({"config": {"registries": {"docker.io": {"mirrors": "https://m"}}}},
         "/config/registries/docker.io/mirrors"),
        ({"config": {"registries": {"docker.io": {"mirrors": ["ftp://m"]}}}},
         "/config/registries/docker.io/mirrors/0"),
        ({"config": {"registries": {"docker.io": {"insecure": "yes"}}}},
         "/config/registries/docker.io/insecure"),
        ({"config": {"metrics": None}}, "metrics"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_refuses(chart, values, needle):
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert needle in str(refused.value)
    # validate_schema coalesces the values with values.yaml, as an install does.
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


@pytest.mark.parametrize("address", ["127.0.0.1:9323", "localhost:9323", "[::1]:9323"])
def test_loopback_metrics_address_fails_render(chart, address):
    # Valid for berthd, but the probes and the Service could not reach it.
    with pytest.raises(helm.HelmRenderError) as refused:
        chart.render({"config": {"metrics": {"address": address}}}, name=RELEASE,
                     namespace=NAMESPACE)
    assert "loopback" in str(refused.value)


def test_service_monitor_needs_service(chart):
    with pytest.raises(helm.HelmRenderError) as refused:
        chart.render({"serviceMonitor": {"enabled": True}, "service": {"enabled": False}},
                     name=RELEASE, namespace=NAMESPACE)
    assert "service.enabled" in str(refused.value)
