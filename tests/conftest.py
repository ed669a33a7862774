"""Shared fixtures: a real three-process testbed on free loopback ports, real test images."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.manifest import Manifest, Tier, load_manifest
from shared.settings import DEFAULT_MODELS_DIR
from splitexit.samples import LabelledImage, test_images
from splitexit.testbed import Testbed, free_port

IMAGE_MODEL_DIR = DEFAULT_MODELS_DIR / "fmnist-cnn"


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


@pytest.fixture(scope="session")
def edge_address(testbed: Testbed) -> str:
    return testbed.processes[Tier.EDGE].address

