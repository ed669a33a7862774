"""The Kubernetes manifests in deploy/k8s/: valid for a recent Kubernetes, and wired as the tiers serve.

``kubernetes-validate`` checks every resource against the API's schemas
(strict: unknown fields fail). The rest ties the manifests to the code, as
tests/deploy/test_compose.py does for compose: each tier's Deployment runs its serve
command with settings its tier has, probes its gRPC port, offloads to the next
tier's headless Service (one address per pod, for the links' pools), and edge
and cloud scale with an HPA and keep replicas through disruptions (PDB).
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from tests.deploy_files import NEXT, ROOT, TIERS, dockerfile_env, dockerfile_instructions, tier_settings

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
POOLED = ("edge", "cloud")


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_fails_validation(resources: dict[tuple[str, str], dict]) -> None:
    """The validator above can fail: a misspelt field and a wrong type are caught."""
    deployment = yaml.safe_load(yaml.safe_dump(resources[("Deployment", "cloud")]))
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = yaml.safe_load(yaml.safe_dump(resources[("Deployment", "cloud")]))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def container(resources: dict[tuple[str, str], dict], tier: str) -> dict:
    [only] = resources[("Deployment", tier)]["spec"]["template"]["spec"]["containers"]
    return only


def settings_of(resources: dict, tier: str, monkeypatch: pytest.MonkeyPatch) -> BaseSettings:
    """The tier's settings in its pod: the image's ENV and the container's env."""
    env = {item["name"]: item["value"] for item in container(resources, tier).get("env", [])}
    prefix = f"SPLITEXIT_{tier.upper()}_"
    for key in env:
        assert key.startswith(prefix) and key.removeprefix(prefix).lower() in TIERS[tier].model_fields, key
    image_env = dockerfile_env(dockerfile_instructions((ROOT / "Dockerfile").read_text()))
    return tier_settings(tier, {**image_env, **env}, monkeypatch)


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_serves_probes_and_publishes_its_ports(
    tier: str, resources: dict, services: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = container(resources, tier)
    assert spec["command"] == ["splitexit", "serve", tier]
    assert spec["image"] == services[tier]["image"], "the image docker-compose.yml builds"
    settings = settings_of(resources, tier, monkeypatch)
    assert settings.host == "0.0.0.0"
    served = {value for name, value in settings.model_dump().items() if name.endswith("port") and value}
    assert {p["containerPort"] for p in spec["ports"]} == served
    health = ["splitexit", "health", f"127.0.0.1:{settings.port}"]
    for probe in ("readinessProbe", "livenessProbe"):  # grpc probes cannot present the client certificate mTLS asks
        command = spec[probe]["exec"]["command"]
        assert command[:3] == health and "--tls-cert" in command, f"{tier}: {probe} asks grpc.health.v1 on its port"
    files = (settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
    mounted = {m["mountPath"] for m in spec["volumeMounts"]}
    assert all(path is not None and str(path.parent) in mounted for path in files), f"{tier}: TLS files from the secret"
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"])
    service_ports = {p["port"] for p in resources[("Service", tier)]["spec"]["ports"]}
    assert service_ports == served
    pod_labels = resources[("Deployment", tier)]["spec"]["template"]["metadata"]["labels"]
    assert resources[("Service", tier)]["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("tier", NEXT)
def test_next_tier_is_a_headless_service_on_its_grpc_port(
    tier: str, resources: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headless: DNS answers with every ready pod, so the link keeps a stream per replica."""
    host, _, port = settings_of(resources, tier, monkeypatch).next_tier.rpartition(":")
    assert host == NEXT[tier]
    service = resources[("Service", host)]["spec"]
    assert service["clusterIP"] == "None", f"{host}'s Service must be headless for client-side balancing"
    assert int(port) == settings_of(resources, host, monkeypatch).port


@pytest.mark.parametrize("tier", POOLED)
def test_pooled_tiers_autoscale_and_keep_replicas_through_disruptions(tier: str, resources: dict) -> None:
    deployment = resources[("Deployment", tier)]
    hpa = resources[("HorizontalPodAutoscaler", tier)]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": tier}
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    pdb = resources[("PodDisruptionBudget", tier)]["spec"]
    assert 1 <= pdb["minAvailable"] < hpa["minReplicas"], "a drain may take a pod, never all"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    container_spec = container(resources, tier)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    settings = TIERS[tier].model_construct()  # the defaults: the manifests set no drain times
    assert grace > settings.drain_grace_s + settings.drain_timeout_s, "Kubernetes must not kill a draining pod"
    assert container_spec["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_device_keeps_its_learned_state_on_a_volume(resources: dict) -> None:
    spec = resources[("Deployment", "device")]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in container(resources, "device")["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    claim = volumes[mounts["/app/state"]]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in resources
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", "one writer of the state at a time"
