"""docker-compose.yml against the code, statically (no Docker engine).

Each tier service must run a real CLI command, set only settings its tier has
(and valid values), reach the next tier by a service name and the port that
service listens on, publish the ports it serves, check its own health, and
start after the tier it offloads to is healthy. Prometheus, Grafana, the load
generator and the link emulation are wired to what the tiers serve.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import (
    NEXT,
    ROOT,
    TIERS,
    container_ports,
    dockerfile_env,
    dockerignore_excludes,
    dockerignore_patterns,
    environment,
    model_stages,
    stages,
    tier_settings,
)

# -- compose: commands, settings, wiring ---------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_command_is_a_valid_serve_command(tier: str, services: dict[str, dict]) -> None:
    command = services[tier]["command"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts, f"{command[0]!r} is not a console script of the project"
    assert command[1:] == ["serve", tier], f"the {tier} service must serve the {tier} tier, not {command}"
    check = subprocess.run(
        [sys.executable, "-m", "splitexit", *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, f"splitexit refuses {command}: {check.stderr}"


def test_every_tier_runs_the_same_image(services: dict[str, dict]) -> None:
    images = {services[tier].get("image") for tier in TIERS}
    assert len(images) == 1 and None not in images, f"one image name for all tiers, not {images}"
    assert all(services[tier].get("restart") == "unless-stopped" for tier in TIERS)


@pytest.mark.parametrize("tier", TIERS)
def test_env_names_settings_of_the_tier_and_validates(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_cls = TIERS[tier]
    prefix = f"SPLITEXIT_{tier.upper()}_"
    image_env = {k: v for k, v in dockerfile_env(dockerfile).items() if k.startswith("SPLITEXIT_")}
    service_env = {k: v for k, v in environment(services[tier]).items() if k.startswith("SPLITEXIT_")}
    for key in service_env:
        assert key.startswith(prefix), f"{tier} service sets {key}, which its tier does not read"
    for key in [*image_env, *service_env]:
        if key.startswith(prefix):
            field = key.removeprefix(prefix).lower()
            assert field in settings_cls.model_fields, f"{key}: {settings_cls.__name__} has no field {field!r}"
    settings = tier_settings(tier, {**image_env, **service_env}, monkeypatch)  # raises if a value is invalid
    assert settings.host == "0.0.0.0", f"the {tier} tier must listen on all interfaces in its container"


def test_image_points_every_tier_at_the_shipped_models(
    dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The image ships models/ as ./models of the tiers' working directory and sets no models folder by hand:
    every tier finds it by the documented search order, as a pip-installed tier does."""
    copied = {}
    exporters = model_stages(dockerfile)
    final = stages(dockerfile)[-1][1]
    for keyword, args in final:
        words = [w for w in args.split() if not w.startswith("--")]
        origin = next((w.removeprefix("--from=") for w in args.split() if w.startswith("--from=")), None)
        if keyword == "COPY" and (origin is None or origin in exporters):
            for source in words[:-1]:
                copied[Path(source.strip("/")).name] = words[-1].rstrip("/")
    assert "models" in copied, "the image must ship models/"
    [workdir, *_] = [args for keyword, args in reversed(final) if keyword == "WORKDIR"]
    assert copied["models"] == f"{workdir.rstrip('/')}/models", "models/ must be ./models of the WORKDIR"
    image_env = dockerfile_env(dockerfile)
    assert not [key for key in image_env if key.endswith("MODELS_DIR")], "the models search order needs no ENV"
    monkeypatch.chdir(tmp_path)  # stands in for the WORKDIR
    for tier in TIERS:
        settings = tier_settings(tier, image_env, monkeypatch)
        assert settings.models_dir == tmp_path / "models", f"{tier}: models_dir {settings.models_dir}"


@pytest.mark.parametrize("tier", NEXT)
def test_next_tier_names_a_service_and_its_port(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    image_env = dockerfile_env(dockerfile)
    settings = tier_settings(tier, {**image_env, **environment(services[tier])}, monkeypatch)
    host, _, port = settings.next_tier.rpartition(":")
    assert host == NEXT[tier], f"{tier} must offload to the {NEXT[tier]} service, not {host!r}"
    assert host in services
    target = tier_settings(host, {**image_env, **environment(services[host])}, monkeypatch)
    assert int(port) == target.port, f"{tier} offloads to {host}:{port} but {host} listens on {target.port}"


def test_cloud_has_no_next_tier(services: dict[str, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    assert tier_settings("cloud", environment(services["cloud"]), monkeypatch).next_tier is None


@pytest.mark.parametrize("tier", TIERS)
def test_published_ports_are_the_ports_the_tier_serves(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tier_settings(tier, {**dockerfile_env(dockerfile), **environment(services[tier])}, monkeypatch)
    served = {value for name, value in settings.model_dump().items() if name.endswith("port") and value}
    assert container_ports(services[tier]) == served, f"{tier} serves {served}"
    exposed = {int(p.split("/")[0]) for k, args in dockerfile if k == "EXPOSE" for p in args.split()}
    assert served <= exposed, f"the Dockerfile does not EXPOSE {served - exposed}"


CERTS = "/certs"
CLIENT_CERT, CLIENT_KEY = f"{CERTS}/client.pem", f"{CERTS}/client-key.pem"


@pytest.mark.parametrize("tier", TIERS)
def test_healthcheck_asks_the_tier_itself(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    check = services[tier].get("healthcheck")
    assert check and not check.get("disable"), f"{tier} has no healthcheck"
    settings = tier_settings(tier, {**dockerfile_env(dockerfile), **environment(services[tier])}, monkeypatch)
    assert check["test"][:4] == ["CMD", "splitexit", "health", f"127.0.0.1:{settings.port}"]
    options = dict(zip(check["test"][4::2], check["test"][5::2], strict=True))
    assert options == {"--tls-ca": str(settings.tls_ca_file), "--tls-cert": CLIENT_CERT, "--tls-key": CLIENT_KEY}
    parsed = subprocess.run(
        [sys.executable, "-m", "splitexit", *check["test"][2:], "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr


@pytest.mark.parametrize("tier", NEXT)
def test_tiers_start_after_the_tier_they_offload_to_is_healthy(tier: str, services: dict[str, dict]) -> None:
    depends_on = services[tier].get("depends_on")
    assert isinstance(depends_on, dict), f"{tier}: depends_on needs the long form, with a condition"
    assert depends_on == {NEXT[tier]: {"condition": "service_healthy"}}


def test_cloud_waits_only_for_the_certificates(services: dict[str, dict]) -> None:
    assert services["cloud"].get("depends_on") == {"certs": {"condition": "service_completed_successfully"}}


@pytest.mark.parametrize("tier", TIERS)
def test_every_tier_speaks_mutual_tls_with_the_certificates_the_certs_service_writes(
    tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tier_settings(tier, {**dockerfile_env(dockerfile), **environment(services[tier])}, monkeypatch)
    assert not settings.plaintext
    assert (settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file) == (
        Path(f"{CERTS}/{tier}.pem"),
        Path(f"{CERTS}/{tier}-key.pem"),
        Path(f"{CERTS}/ca.pem"),
    )  # what `splitexit certs` names them
    assert f"certs:{CERTS}:ro" in services[tier]["volumes"]
    assert services["certs"]["volumes"] == [f"certs:{CERTS}"]
    assert f"splitexit certs {CERTS}" in services["certs"]["command"][-1]


# -- observability, traffic and link emulation ---------------------------------------------------

PROMETHEUS_CONFIG_IN_CONTAINER = "/etc/prometheus/prometheus.yml"
GRAFANA_PROVISIONING_IN_CONTAINER = "/etc/grafana/provisioning"
NETEM_SCRIPT = ROOT / "deploy" / "netem" / "netem.sh"


def bind_mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (short syntax, ``./host:/container[:ro]``)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = ROOT / source
    return mounts


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with NAME unset: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def tier_env(tier: str, services: dict[str, dict], dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    return {**dockerfile_env(dockerfile), **environment(services[tier])}


def test_every_bind_mount_exists(services: dict[str, dict]) -> None:
    mounted = {name: bind_mounts(service) for name, service in services.items()}
    assert mounted["prometheus"] and mounted["grafana"]
    for name, mounts in mounted.items():
        for target, source in mounts.items():
            assert source.exists(), f"{name} mounts {source} (at {target}), which is not in the repository"


def test_prometheus_scrapes_every_tier_on_its_metrics_port(
    services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica of every tier: the service name is looked up in DNS (an A record per container)."""
    config_file = bind_mounts(services["prometheus"])[PROMETHEUS_CONFIG_IN_CONTAINER]
    assert f"--config.file={PROMETHEUS_CONFIG_IN_CONTAINER}" in services["prometheus"]["command"]
    config = yaml.safe_load(config_file.read_text())
    groups = [group for job in config["scrape_configs"] for group in job["dns_sd_configs"]]
    assert all(group["type"] == "A" for group in groups)
    targets = {f"{name}:{group['port']}" for group in groups for name in group["names"]}
    expected = set()
    for tier in TIERS:
        settings = tier_settings(tier, tier_env(tier, services, dockerfile), monkeypatch)
        assert settings.metrics_port, f"the {tier} serves no metrics in compose"
        assert settings.metrics_port in container_ports(services[tier])
        expected.add(f"{tier}:{settings.metrics_port}")
    assert targets == expected


def test_ports_are_published_on_loopback_and_pooled_tiers_on_random_host_ports(services: dict[str, dict]) -> None:
    """Nothing listens beyond 127.0.0.1; edge and cloud take no fixed host port, so `--scale` works."""
    for name, service in services.items():
        for entry in service.get("ports") or []:
            assert entry.startswith("127.0.0.1:"), f"{name} publishes {entry} beyond 127.0.0.1"
            if name in ("edge", "cloud"):
                assert entry.startswith("127.0.0.1::"), f"{name} publishes {entry} on a fixed host port"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards(services: dict[str, dict]) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts[GRAFANA_PROVISIONING_IN_CONTAINER]
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    prometheus_port = container_ports(services["prometheus"]).pop()
    assert [(s["type"], s["url"]) for s in datasources] == [("prometheus", f"http://prometheus:{prometheus_port}")]
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers, "no dashboard provider"
    for provider in providers:
        folder = mounts.get(provider["options"]["path"])
        assert folder is not None, f"grafana mounts nothing at the provider's path {provider['options']['path']}"
        dashboards = sorted(folder.glob("*.json"))
        assert dashboards, f"{folder} holds no dashboard"
        for path in dashboards:
            uids = {p["datasource"]["uid"] for p in json.loads(path.read_text())["panels"] if "datasource" in p}
            assert uids == {datasources[0]["uid"]}, f"{path.name} refers to data sources {uids}"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, name = home.rpartition("/")
    assert (mounts[folder] / name).is_file(), home


def test_third_party_images_are_pinned(services: dict[str, dict]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image} to a version"


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_observability_services_have_healthchecks_and_restart(name: str, services: dict[str, dict]) -> None:
    service = services[name]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service.get("restart") == "unless-stopped"


def test_loadgen_sends_to_the_device_once_it_is_healthy(
    services: dict[str, dict], dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loadgen = services["loadgen"]
    assert loadgen["profiles"] == ["loadgen"], "the load generator starts only when asked for"
    assert loadgen["image"] == services["device"]["image"]
    command = loadgen["command"]
    assert command[:2] == ["splitexit", "loadgen"]
    parsed = subprocess.run(
        [sys.executable, "-m", "splitexit", *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr
    device = tier_settings("device", tier_env("device", services, dockerfile), monkeypatch)
    assert command[command.index("--address") + 1] == f"device:{device.port}"
    assert loadgen["depends_on"] == {"device": {"condition": "service_healthy"}}


def test_loadgen_samples_reach_the_image() -> None:
    """The serving image has no dataset: the loadgen's image pack must be in the context and the package."""
    from splitexit.samples import SAMPLE_PACK

    relative = SAMPLE_PACK.relative_to(ROOT).as_posix()
    assert SAMPLE_PACK.is_file() and not dockerignore_excludes(relative, dockerignore_patterns())
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(Path(relative).match(f"splitexit/{pattern}") for pattern in package_data["splitexit"])


@pytest.mark.parametrize("tier", TIERS)
def test_netem_sidecar_shapes_the_links_of_its_tier(tier: str, services: dict[str, dict]) -> None:
    sidecar = services[f"netem-{tier}"]
    assert sidecar["profiles"] == ["netem"] and sidecar["cap_add"] == ["NET_ADMIN"]
    assert sidecar["network_mode"] == f"service:{tier}"
    assert (ROOT / sidecar["build"]["context"] / "Dockerfile").is_file()
    peers = {link.split("=")[0] for link in map(interpolate, sidecar["command"])}
    neighbours = {t for t, n in NEXT.items() if n == tier} | ({NEXT[tier]} if tier in NEXT else set())
    assert peers == neighbours, f"{tier} talks to {neighbours}, its sidecar shapes {peers}"


def test_netem_script_applies_each_profile_to_its_peer(tmp_path: Path) -> None:
    """netem.sh with stand-ins for tc and getent: the qdiscs and filters it would install."""
    calls = tmp_path / "tc.calls"
    (tmp_path / "tc").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (tmp_path / "getent").write_text(
        '#!/bin/sh\n[ "$2" = device ] && echo "10.0.0.3 device" || echo "10.0.0.5 cloud"\n'
    )
    for tool in ("tc", "getent"):
        (tmp_path / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(["sh", str(NETEM_SCRIPT), "device=4g", "cloud=wan"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    assert "qdisc add dev eth0 parent 1:4 handle 40: netem delay 25ms 8ms rate 20mbit" in lines
    assert "filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.3/32 flowid 1:4" in lines
    assert "qdisc add dev eth0 parent 1:5 handle 50: netem delay 10ms 1ms rate 1gbit" in lines
    bad = subprocess.run(["sh", str(NETEM_SCRIPT), "device=dialup"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown profile" in bad.stderr
