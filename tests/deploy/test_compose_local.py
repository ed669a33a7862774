"""docker-compose.local.yml, statically: it may change only what a local, shared, offline engine needs.

The engine tests (tests/deploy/test_compose_stack.py, tests/deploy/test_compose_pools.py) run
docker-compose.yml with this override. So that they test the real file, the
override may only publish ports on 127.0.0.1 at random host ports, swap images
that cannot be pulled for local builds, and reset the keys named in RESETS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_files import ROOT, container_ports

LOCAL_FILE = ROOT / "docker-compose.local.yml"
STARTED = ("cloud", "edge", "device", "prometheus")  # what the engine tests start; Grafana cannot run here
RESETS = {"healthcheck.start_interval": "needs Docker Engine >= 25; Debian bookworm's docker.io is 20.10"}
LOCAL_IMAGE_KEYS = {"image", "build"}


class Tagged:
    """A value Compose reads with a tag: ``!reset`` (drop the key) or ``!override`` (replace, not merge)."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


class ComposeLoader(yaml.SafeLoader):
    pass


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(
        _tag,
        lambda loader, node, tag=_tag: Tagged(
            tag,
            loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_scalar(node),
        ),
    )


@pytest.fixture(scope="module")
def local() -> dict[str, dict]:
    document = yaml.load(LOCAL_FILE.read_text(), Loader=ComposeLoader)
    assert set(document) == {"services"}, f"the override changes only services, not {set(document) - {'services'}}"
    return document["services"]


def resets(service: dict, prefix: str = "") -> list[str]:
    """Dotted names of the keys the override resets in ``service``."""
    found = []
    for key, value in service.items():
        if isinstance(value, Tagged) and value.tag == "!reset":
            found.append(prefix + key)
        elif isinstance(value, dict):
            found += resets(value, f"{prefix}{key}.")
    return found


def test_override_touches_only_services_of_the_file(local: dict[str, dict], services: dict[str, dict]) -> None:
    assert set(local) <= set(services)
    assert set(STARTED) <= set(local), "every service the engine tests start publishes on random ports"
    for name, service in local.items():
        allowed = {"ports", "healthcheck"} | (LOCAL_IMAGE_KEYS if "build" not in services[name] else set())
        assert set(service) <= allowed, f"{name}: the override may not change {set(service) - allowed}"


@pytest.mark.parametrize("name", STARTED)
def test_ports_are_the_same_ports_on_loopback_random_host_ports(
    name: str, local: dict[str, dict], services: dict[str, dict]
) -> None:
    ports = local[name]["ports"]
    assert isinstance(ports, Tagged) and ports.tag == "!override", "ports must replace, not add to, the file's"
    for entry in ports.value:
        assert re.fullmatch(r"127\.0\.0\.1::\d+", entry), f"{name}: {entry} is not 127.0.0.1::PORT"
    assert container_ports({"ports": ports.value}) == container_ports(services[name])


def test_only_the_named_keys_are_reset(local: dict[str, dict], services: dict[str, dict]) -> None:
    for name, service in local.items():
        for key in resets(service):
            assert key in RESETS, f"{name}: resets {key}, which no engine limit explains"
            section, _, field = key.partition(".")
            assert field in services[name].get(section, {}), f"{name}: resets {key}, which the file does not set"
    for name in STARTED:
        if "start_interval" in services[name]["healthcheck"]:
            assert "healthcheck.start_interval" in resets(local[name]), f"{name}: the engine refuses start_interval"


def test_images_that_cannot_be_pulled_are_built_locally(local: dict[str, dict], services: dict[str, dict]) -> None:
    """Each started service that is not the project's image has a local build, from the local base."""
    for name in STARTED:
        if "build" in services[name]:
            continue
        swap = local[name]
        assert LOCAL_IMAGE_KEYS <= set(swap), f"{name}: {services[name]['image']} cannot be pulled here"
        assert swap["image"].endswith(":local") and swap["image"] != services[name]["image"]
        dockerfile = ROOT / swap["build"]["context"] / "Dockerfile"
        assert dockerfile.is_file(), dockerfile
        froms = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]
        assert froms == ["${BASE_IMAGE}"] and "BASE_IMAGE" in swap["build"]["args"]


def test_the_local_prometheus_keeps_the_upstream_images_contract(services: dict[str, dict]) -> None:
    """The compose service passes flags only, and checks health with wget: the local image must take both."""
    text = Path(ROOT / "deploy" / "prometheus" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/usr/bin/prometheus"]' in text and " wget" in text
    assert all(flag.startswith("--") for flag in services["prometheus"]["command"])
    assert services["prometheus"]["healthcheck"]["test"][1] == "wget"
