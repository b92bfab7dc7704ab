"""infra/k8s: built-in kinds (and every pod template) against the Kubernetes schemas; custom
resources against the fields their operators document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "infra" / "k8s"
KUBERNETES = "1.34.0"
IMAGE = "registry.example.com/scaleclf:0.1"

# What each operator documents (required fields, and the keys it knows, at each level checked).
# SparkApplication: kubeflow/spark-operator api/v1beta2; RayCluster/RayJob: KubeRay ray.io/v1;
# DaskJob: dask-kubernetes operator kubernetes.dask.org/v1.
CUSTOM: dict[str, dict[str, Any]] = {
    "SparkApplication": {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "required": {"type", "sparkVersion", "mode", "mainApplicationFile", "driver", "executor"},
        "known": {
            "type", "pythonVersion", "mode", "image", "imagePullPolicy", "mainApplicationFile", "mainClass",
            "arguments", "sparkVersion", "sparkConf", "hadoopConf", "restartPolicy", "volumes", "driver",
            "executor", "deps", "timeToLiveSeconds", "batchScheduler", "sparkConfigMap", "dynamicAllocation",
        },
        "pods": {"driver": {"cores", "memory"}, "executor": {"instances", "cores", "memory"}},
    },
    "RayCluster": {
        "apiVersion": "ray.io/v1",
        "required": {"headGroupSpec"},
        "known": {"rayVersion", "headGroupSpec", "workerGroupSpecs", "enableInTreeAutoscaling", "suspend"},
    },
    "RayJob": {
        "apiVersion": "ray.io/v1",
        "required": {"entrypoint", "rayClusterSpec"},
        "known": {
            "entrypoint", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "runtimeEnvYAML",
            "rayClusterSpec", "submissionMode", "activeDeadlineSeconds", "backoffLimit", "suspend",
        },
    },
    "DaskJob": {
        "apiVersion": "kubernetes.dask.org/v1",
        "required": {"job", "cluster"},
        "known": {"job", "cluster"},
    },
}  # fmt: skip


def documents() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}:{doc['kind']}", doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


DOCS = documents()


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """Return (where, pod spec) of every pod a custom resource describes."""
    spec = doc["spec"]
    if doc["kind"] == "RayCluster":
        groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
        return [(f"group {i}", g["template"]["spec"]) for i, g in enumerate(groups)]
    if doc["kind"] == "RayJob":
        return pod_specs({"kind": "RayCluster", "spec": spec["rayClusterSpec"]})
    if doc["kind"] == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return [
            ("job", spec["job"]["spec"]),
            ("worker", cluster["worker"]["spec"]),
            ("scheduler", cluster["scheduler"]["spec"]),
        ]
    return []


def test_every_manifest_is_checked() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCS)
    assert kinds == sorted(
        [
            "Secret",
            "Secret",
            "PersistentVolumeClaim",
            "ServiceAccount",
            "SparkApplication",
            "RayCluster",
            "RayJob",
            "DaskJob",
            "Secret",
            "Secret",
            "Service",
            "Deployment",
            "StatefulSet",
        ]
    )


def test_flower_superlink_and_supernodes_run_with_tls_and_node_authentication() -> None:
    by_kind = {doc["kind"]: doc for where, doc in DOCS if where.startswith("flower.yaml:")}
    link = by_kind["Deployment"]["spec"]["template"]["spec"]
    nodes = by_kind["StatefulSet"]["spec"]
    node = nodes["template"]["spec"]
    (link_c,), (node_c,) = link["containers"], node["containers"]
    assert link_c["image"] == node_c["image"] == IMAGE
    assert link_c["command"] == ["flower-superlink"] and node_c["command"] == ["flower-supernode"]
    assert "--enable-supernode-auth" in link_c["args"] and not any(
        "insecure" in a for a in link_c["args"] + node_c["args"]
    )
    assert {a.split("=")[0] for a in link_c["args"]} >= {"--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile"}
    port = by_kind["Service"]["spec"]["ports"][0]["port"]
    assert f"--port={port}" in link_c["args"] and f"--superlink=scaleclf-superlink:{port}" in node_c["args"]
    assert by_kind["Service"]["metadata"]["name"] == "scaleclf-superlink"
    # SuperNode I (pod index I) uses node key I and serves partition I of `replicas`.
    replicas = nodes["replicas"]
    assert "--root-certificates=/etc/scaleclf/flower-tls/ca.pem" in node_c["args"]
    assert f"--node-config=partition-id=$(POD_INDEX) num-partitions={replicas}" in node_c["args"]
    assert "--auth-supernode-private-key=/etc/scaleclf/flower-node-keys/node-$(POD_INDEX)" in node_c["args"]
    (index,) = [e for e in node_c["env"] if e["name"] == "POD_INDEX"]
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    secrets = {doc["metadata"]["name"]: doc for where, doc in DOCS if where == "flower.yaml:Secret"}
    assert sorted(secrets["scaleclf-flower-node-keys"]["stringData"]) == [f"node-{i}" for i in range(replicas)]
    assert sorted(secrets["scaleclf-flower-tls"]["stringData"]) == ["ca.pem", "tls.key", "tls.pem"]
    for pod in (link, node):
        assert pod["securityContext"]["runAsNonRoot"] is True
        mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert mounted <= set(secrets) and "scaleclf-flower-tls" in mounted
        (container,) = pod["containers"]
        assert container["resources"]["requests"] == container["resources"]["limits"]


@pytest.mark.parametrize(
    ("where", "doc"), [d for d in DOCS if d[1]["kind"] not in CUSTOM], ids=lambda v: v if isinstance(v, str) else ""
)
def test_built_in_kinds_validate_against_the_kubernetes_schema(where: str, doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize(
    ("where", "doc"), [d for d in DOCS if d[1]["kind"] in CUSTOM], ids=lambda v: v if isinstance(v, str) else ""
)
def test_custom_resources_use_the_fields_their_operator_documents(where: str, doc: dict) -> None:
    import kubernetes_validate

    schema = CUSTOM[doc["kind"]]
    assert doc["apiVersion"] == schema["apiVersion"]
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    assert schema["required"] <= set(spec), schema["required"] - set(spec)
    assert set(spec) <= schema["known"], set(spec) - schema["known"]
    for role, fields in schema.get("pods", {}).items():
        assert fields <= set(spec[role]), (role, fields - set(spec[role]))
    # Every pod the resource makes is a valid Kubernetes pod running the image, as non-root, with
    # resource requests equal to limits (a guaranteed QoS class) and the TLS/auth secret mounted.
    for name, pod in pod_specs(doc):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod}, KUBERNETES, strict=True
        )
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {"scaleclf-tls"}, name
        for container in pod["containers"]:
            assert container["image"] == IMAGE, name
            assert container["resources"]["requests"] == container["resources"]["limits"], name
    if doc["kind"] == "SparkApplication":
        conf = spec["sparkConf"]
        assert conf["spark.authenticate"] == "true" and conf["spark.network.crypto.enabled"] == "true"
        assert spec["image"] == IMAGE
        assert {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v} == {"scaleclf-spark-auth"}
        for role in ("driver", "executor"):
            mounts = {m["name"] for m in spec[role]["volumeMounts"]}
            assert "spark-auth" in mounts, role


def test_a_wrong_field_is_caught() -> None:
    import kubernetes_validate

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
    pod["spec"] = {"containers": [{"name": "a", "image": IMAGE, "resource": {}}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES, strict=True)
