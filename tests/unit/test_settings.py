"""Tier settings: env vars over YAML over defaults; configurations that cannot work fail at start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from splitexit.cloud.settings import CloudSettings
from splitexit.device.settings import DeviceSettings
from splitexit.edge.settings import EdgeSettings
from splitexit.shared.manifest import BlockRange
from splitexit.shared.node import TierNode
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tiers import Tier


def test_defaults_follow_the_architecture_ports() -> None:
    assert (DeviceSettings().port, EdgeSettings().port, CloudSettings().port) == (50051, 50052, 50053)
    assert DeviceSettings().next_tier == "127.0.0.1:50052" and CloudSettings().next_tier is None


def test_env_overrides_yaml_which_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "splitexit.yaml"
    config.write_text(
        "hosted: {fmnist-cnn: {edge: {first: 3, last: 5}}}\n"
        "edge:\n  port: 6000\n  exit_threshold: 0.95\n"
        "device:\n  port: 7000\n"
    )
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    monkeypatch.setenv("SPLITEXIT_EDGE_PORT", "6001")
    edge = EdgeSettings()
    assert edge.port == 6001 and edge.exit_threshold == 0.95
    assert DeviceSettings().port == 7000 and CloudSettings().port == 50053


def test_hosted_ranges_are_one_setting_for_the_whole_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "splitexit.yaml"
    config.write_text("hosted: {fmnist-cnn: {edge: {first: 3, last: 5}}}\n")
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    expected = {"fmnist-cnn": {Tier.EDGE: BlockRange(first=3, last=5)}}
    assert EdgeSettings().hosted == DeviceSettings().hosted == CloudSettings().hosted == expected
    monkeypatch.setenv("SPLITEXIT_HOSTED", '{"fmnist-cnn": {"device": {"first": 1, "last": 1}}}')
    assert DeviceSettings().hosted["fmnist-cnn"][Tier.DEVICE] == BlockRange(first=1, last=1)


def test_hosted_ranges_cannot_be_set_for_one_tier_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLITEXIT_EDGE_HOSTED", '{"fmnist-cnn": {"edge": {"first": 3, "last": 4}}}')
    with pytest.raises(ValueError, match="SPLITEXIT_HOSTED"):
        EdgeSettings()
    monkeypatch.delenv("SPLITEXIT_EDGE_HOSTED")
    config = tmp_path / "splitexit.yaml"
    config.write_text("edge:\n  hosted: {fmnist-cnn: {edge: {first: 3, last: 5}}}\n")
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    with pytest.raises(ValueError, match="at the top level"):
        EdgeSettings()


def test_unknown_settings_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("cloud:\n  prot: 1\n")
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        CloudSettings()


def test_a_cloud_that_does_not_host_the_final_block_refuses_to_start() -> None:
    settings = CloudSettings(hosted={"fmnist-cnn": {Tier.CLOUD: BlockRange(first=1, last=4)}})
    with pytest.raises(ValueError, match="the cloud must host the final block"):
        TierNode.from_settings(settings)


def test_disjoint_slices_are_one_setting_away() -> None:
    async def edge_model() -> HostedModel:
        settings = EdgeSettings(hosted={"fmnist-cnn": {Tier.EDGE: BlockRange(first=3, last=4)}}, plaintext=True)
        node = TierNode.from_settings(settings)
        await node.close()
        return node.registry.get("fmnist-cnn")

    model = asyncio.run(edge_model())
    assert model.hosted == BlockRange(first=3, last=4)
    with pytest.raises(Exception, match="cannot resume at block 2"):
        model.check_resumable(2)
