"""deploy/k8s: every document valid against the Kubernetes API schemas (offline), and the rules we promise.

Rendering: `kubectl kustomize` (or `kustomize build`) when installed; otherwise the base's own files as listed in
its kustomization.yaml (the base is plain YAML, so that is exactly what kustomize would start from). Validation:
the `kubernetes-validate` package, which bundles the schemas; no network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "managed"
K8S_VERSION = "1.30"
CUSTOM_KINDS = {"ServiceMonitor"}  # a CRD (Prometheus Operator): checked by hand below
WORKLOADS = {"Deployment", "Job"}


def _kustomize() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def _render(folder: Path) -> list[dict[str, Any]]:
    command = _kustomize()
    if command is not None:
        text = subprocess.run([*command, str(folder)], check=True, capture_output=True, text=True).stdout
        return [d for d in yaml.safe_load_all(text) if d]
    if folder != BASE:
        pytest.skip("rendering an overlay needs kubectl or kustomize")
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    return [d for name in listed for d in yaml.safe_load_all((folder / name).read_text()) if d]


@pytest.fixture(scope="module", params=["base", "overlay"])
def documents(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(BASE if request.param == "base" else OVERLAY)


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind} {name}"
    return found[0]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def test_every_document_is_valid_for_the_kubernetes_api(documents: list[dict[str, Any]]) -> None:
    for doc in documents:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_service_monitor_scrapes_the_metrics_port_of_labelled_services(documents: list[dict[str, Any]]) -> None:
    monitor = _named(documents, "ServiceMonitor", "scimsync")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [d for d in documents if d["kind"] == "Service" and selector.items() <= d["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in scraped} == {
        "scimsync-api-metrics",
        "scimsync-consumer-booking-metrics",
        "scimsync-consumer-workspace-metrics",
    }
    for service in scraped:
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def test_every_container_runs_locked_down_with_requests_and_limits(documents: list[dict[str, Any]]) -> None:
    for name, pod in _pod_specs(documents):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name  # the Dockerfile's USER
        assert pod["automountServiceAccountToken"] is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), where


def test_secrets_come_from_a_secret_and_are_never_written_into_the_manifests(documents: list[dict[str, Any]]) -> None:
    assert not [d for d in documents if d["kind"] == "Secret"], "Secrets are created by the operator, not shipped"
    secret_names = {"DATABASE_URL", "SCIMSYNC_OPERATOR_KEY", "KAFKA_SASL_PASSWORD"}
    for name, pod in _pod_specs(documents):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for var in container.get("env", []):
                if var["name"] in secret_names:
                    assert "value" not in var, f"{name}: {var['name']} inlined"
                    assert var["valueFrom"]["secretKeyRef"]["name"] == "scimsync-secrets"
            assert any(v["name"] == "DATABASE_URL" for v in container.get("env", [])), name
    for config in (d for d in documents if d["kind"] == "ConfigMap"):
        assert not secret_names & config["data"].keys(), "a secret in a ConfigMap"
        for value in config["data"].values():
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"credentials in a URL: {value}"


def test_the_api_scales_drains_and_probes(documents: list[dict[str, Any]]) -> None:
    api = _named(documents, "Deployment", "scimsync-api")
    assert api["spec"]["replicas"] >= 2
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = api["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"].startswith("/readyz")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and int(pause[1]) >= 5
    # The pause plus uvicorn's 10 s graceful shutdown must fit before the kubelet's SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= int(pause[1]) + 10
    assert [c["args"] for c in pod["initContainers"]] == [["migrate", "--check"]]
    hpa = _named(documents, "HorizontalPodAutoscaler", "scimsync-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "scimsync-api" and hpa["spec"]["minReplicas"] >= 2


def test_the_relay_runs_leader_and_standby_under_a_disruption_budget(documents: list[dict[str, Any]]) -> None:
    relay = _named(documents, "Deployment", "scimsync-relay")
    assert relay["spec"]["replicas"] == 2
    pdb = _named(documents, "PodDisruptionBudget", "scimsync-relay")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= relay["spec"]["template"]["metadata"]["labels"].items()


def test_consumers_never_outnumber_the_partitions(documents: list[dict[str, Any]]) -> None:
    config = _named(documents, "ConfigMap", "scimsync-config")["data"]
    partitions = int(config["SCIMSYNC_TOPIC_PARTITIONS"])
    for domain in ("booking", "workspace"):
        consumer = _named(documents, "Deployment", f"scimsync-consumer-{domain}")
        assert 1 <= consumer["spec"]["replicas"] <= partitions
        assert consumer["spec"]["template"]["spec"]["containers"][0]["args"] == ["consume", domain]


def test_the_migration_job_migrates(documents: list[dict[str, Any]]) -> None:
    job = _named(documents, "Job", "scimsync-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_network_policies_deny_by_default_and_open_only_ingress_metrics_and_data_stores(
    documents: list[dict[str, Any]],
) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "NetworkPolicy"}
    deny = policies["scimsync-default-deny"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    ingress = policies["scimsync-api-from-ingress"]["ingress"]
    assert [p["port"] for rule in ingress for p in rule["ports"]] == [8000]
    assert all(peer.get("namespaceSelector") for rule in ingress for peer in rule["from"])
    egress_ports = {p["port"] for rule in policies["scimsync-egress-postgres-kafka"]["egress"] for p in rule["ports"]}
    assert egress_ports - {53} <= {5432, 9092, 9093, 9094, 9096}
    # Every pod we run is covered by the default deny.
    selector = deny["podSelector"]["matchLabels"]
    for doc in documents:
        if doc["kind"] in WORKLOADS:
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items(), doc["metadata"]["name"]


def test_the_overlay_wires_sasl_ssl_through_the_settings() -> None:
    from consumers.runtime.settings import ConsumerSettings
    from service.settings import Settings

    docs = _render(OVERLAY)
    env = {**_named(docs, "ConfigMap", "scimsync-config")["data"], "KAFKA_SASL_PASSWORD": "from-the-secret"}
    env.pop("KAFKA_SSL_CAFILE")  # a path inside the pod; checked by the settings tests
    service, consumer = Settings.from_env(env), ConsumerSettings.from_env(env)
    for settings in (service.kafka, consumer.kafka):
        assert settings.security_protocol == "SASL_SSL"
        assert settings.sasl_mechanism == "SCRAM-SHA-512"
        assert settings.sasl_plain_username == "scimsync"


def test_the_dockerfile_runs_as_the_manifests_user() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile
