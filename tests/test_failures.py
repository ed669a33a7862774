"""A tier whose next tier is down says so; tiers stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from splitexit.client import DeviceClient
from splitexit.samples import LabelledImage
from splitexit.shared.tiers import Tier
from splitexit.testbed import start_tier
from tests.conftest import free_port


def test_device_reports_unavailable_when_the_edge_is_down_and_still_answers_early_exits(
    tmp_path: Path, images: list[LabelledImage]
) -> None:
    dead_edge = f"127.0.0.1:{free_port()}"  # nothing listens here
    device = start_tier(Tier.DEVICE, free_port(), dead_edge, {}, tmp_path)
    try:

        async def go(threshold: float):
            async with DeviceClient(device.address) as client:
                return await client.infer(images[0].png, threshold=threshold, timeout_s=10)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            asyncio.run(go(1.0))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dead_edge in caught.value.details()
        assert asyncio.run(go(0.0)).exit_block == 1  # samples that exit on the device need no edge
    finally:
        device.stop()


def test_a_tier_drains_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    cloud = start_tier(Tier.CLOUD, free_port(), None, {}, tmp_path)
    started = time.monotonic()
    cloud.stop()
    assert cloud.process.returncode == 0, cloud.log_path.read_text()[-2000:]
    assert time.monotonic() - started < 10
