"""Tier settings: env vars over YAML over defaults; configurations that cannot work fail at start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cloud.settings import CloudSettings
from device.settings import DeviceSettings
from edge.settings import EdgeSettings
from shared.manifest import BlockRange, Tier
from shared.node import TierNode
from shared.runtime import HostedModel


def test_defaults_follow_the_architecture_ports() -> None:
    assert (DeviceSettings().port, EdgeSettings().port, CloudSettings().port) == (50051, 50052, 50053)
    assert DeviceSettings().next_tier == "127.0.0.1:50052" and CloudSettings().next_tier is None


def test_env_overrides_yaml_which_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "splitexit.yaml"
    config.write_text(
        "edge:\n  port: 6000\n  exit_threshold: 0.95\n  hosted: {fmnist-cnn: {first: 3, last: 5}}\n"
        "device:\n  port: 7000\n"
    )
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    monkeypatch.setenv("SPLITEXIT_EDGE_PORT", "6001")
    edge = EdgeSettings()
    assert edge.port == 6001 and edge.exit_threshold == 0.95
    assert edge.hosted == {"fmnist-cnn": BlockRange(first=3, last=5)}
    assert DeviceSettings().port == 7000 and CloudSettings().port == 50053


def test_unknown_settings_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("cloud:\n  prot: 1\n")
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        CloudSettings()


def test_a_cloud_that_does_not_host_the_final_block_refuses_to_start() -> None:
    settings = CloudSettings(hosted={"fmnist-cnn": BlockRange(first=1, last=4)})
    with pytest.raises(ValueError, match="through its final block"):
        TierNode.from_settings(settings)


def test_disjoint_slices_are_one_setting_away() -> None:
    async def edge_model() -> HostedModel:
        node = TierNode.from_settings(EdgeSettings(hosted={"fmnist-cnn": BlockRange(first=3, last=4)}))
        await node.close()
        return node.registry.get("fmnist-cnn")

    model = asyncio.run(edge_model())
    assert model.hosted == BlockRange(first=3, last=4)
    with pytest.raises(Exception, match="cannot resume at block 2"):
        model.check_resumable(Tier.EDGE, 2)
