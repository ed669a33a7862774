"""Shared fixtures: a real three-process testbed on free loopback ports, real test images.

Tests live in folders by what they need, and each folder is a marker (``-m unit``, ``pytest tests/unit``):
``unit`` (one process, seconds), ``models`` (torch training and export, parity, the offline evaluation),
``tiers`` (tier processes on loopback), ``deploy`` (Docker, namespaces, Prometheus, manifests), ``static``
(code shape, types, docs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.fashion_mnist import test_images
from splitexit.policies.chain import Chain
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest, load_manifest
from splitexit.shared.runtime import HostedModel
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port, start_tier
from tests.deploy_files import COMPOSE_FILE, ROOT, TIERS, dockerfile_instructions

IMAGE_MODEL_DIR = DEFAULT_MODELS_DIR / "fmnist-cnn"
FOLDERS = ("unit", "models", "tiers", "deploy", "static")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the folder it lives in."""
    for item in items:
        if item.path.parent.name in FOLDERS:
            item.add_marker(item.path.parent.name)


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return load_manifest(IMAGE_MODEL_DIR)


@pytest.fixture(scope="session")
def images() -> list[LabelledImage]:
    """250 real Fashion-MNIST test images, as PNG bytes, in a fixed random order."""
    return test_images(250, seed=1)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Cloud, edge and device as three processes with the default (nested) hosted ranges."""
    ports = {tier: free_port() for tier in Tier}
    with Testbed(ports=ports, log_dir=tmp_path_factory.mktemp("logs")) as bed:
        yield bed


def whole_model(name: str) -> HostedModel:
    """Every block of a model package in this process (as the cloud hosts them all)."""
    package = DEFAULT_MODELS_DIR / name
    manifest = load_manifest(package)
    return HostedModel(package, manifest, Chain.of(manifest), tier=Tier.CLOUD, onnx_threads=1)


@pytest.fixture(scope="session")
def image_model() -> HostedModel:
    return whole_model("fmnist-cnn")


@pytest.fixture(scope="session")
def text_model() -> HostedModel:
    return whole_model("minilm-sentiment")


@pytest.fixture(scope="session")
def edge_address(testbed: Testbed) -> str:
    return testbed.processes[Tier.EDGE].address


@pytest.fixture(scope="module")
def gateway_url(edge_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a device of its own, with its HTTP gateway, in front of the testbed's edge."""
    http_port = free_port()
    device = start_tier(
        Tier.DEVICE, free_port(), edge_address, {"http_port": str(http_port)}, tmp_path_factory.mktemp("http")
    )
    try:
        yield f"http://127.0.0.1:{http_port}"
    finally:
        device.stop()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    services = compose["services"]
    assert set(TIERS) <= set(services), f"docker-compose.yml lacks tier services {set(TIERS) - set(services)}"
    return services


@pytest.fixture(scope="module")
def dockerfile_path(services: dict[str, dict]) -> Path:
    builds = {(s["build"]["context"], s["build"].get("dockerfile", "Dockerfile")) for s in map(services.get, TIERS)}
    assert len(builds) == 1, f"the tiers must share one build: {builds}"
    context, dockerfile = builds.pop()
    assert context == ".", "the build context is the repository root"
    path = ROOT / context / dockerfile
    assert path.is_file(), f"{path} does not exist"
    return path


@pytest.fixture(scope="module")
def dockerfile(dockerfile_path: Path) -> list[tuple[str, str]]:
    return dockerfile_instructions(dockerfile_path.read_text())


@pytest.fixture(scope="session")
def docker_images() -> Iterator[dict[str, float]]:
    """A Docker engine (found, or installed and started) with the images built; seconds per build.

    Skips, loudly, only where no engine can run (not root and none running)."""
    from tests.docker_engine import EngineUnavailable, build_images, ensure_engine, stop_engine

    try:
        daemon = ensure_engine()
    except EngineUnavailable as exc:
        pytest.skip(f"NO DOCKER ENGINE, the compose stack is NOT tested: {exc}")
    try:
        yield build_images()
    finally:
        stop_engine(daemon)
