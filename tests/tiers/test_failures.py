"""When the next tier is down, a tier answers degraded (unless told not to); tiers stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from splitexit.client import AsyncClient
from splitexit.results import ClientError
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import start_tier
from tests.conftest import free_port


def infer(address: str, image: bytes, threshold: float, forbid_degraded: bool = False) -> pb.InferResponse:
    async def go() -> pb.InferResponse:
        async with AsyncClient(address, retries=0) as client:  # what the device answers, not retried
            request = pb.InferRequest(image=image, policy=pb.Plan(threshold=threshold), forbid_degraded=forbid_degraded)
            return (await client.infer_request(request, timeout_s=10)).message

    return asyncio.run(go())


def test_a_device_whose_edge_is_down_answers_degraded_from_its_deepest_exit(
    tmp_path: Path, images: list[LabelledImage]
) -> None:
    dead_edge = f"127.0.0.1:{free_port()}"  # nothing listens here
    device = start_tier(Tier.DEVICE, free_port(), dead_edge, {}, tmp_path)
    try:
        answer = infer(device.address, images[0].png, threshold=1.0)  # the plan wants the final exit
        assert answer.degraded and (answer.exit_tier, answer.exit_block) == (pb.TIER_NAME_DEVICE, 2)
        assert (
            answer.degradation.reason == pb.DEGRADED_REASON_NEXT_TIER_UNREACHABLE
            and answer.degradation.tier == pb.TIER_NAME_DEVICE
        )
        assert dead_edge in answer.degradation.message
        assert [h.tier for h in answer.hops] == [pb.TIER_NAME_DEVICE] and answer.hops[0].bytes_sent == 0

        with pytest.raises(ClientError) as caught:
            infer(device.address, images[0].png, threshold=1.0, forbid_degraded=True)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE and dead_edge in caught.value.message

        early = infer(device.address, images[0].png, threshold=0.0)  # exits on the device: needs no edge
        assert early.exit_block == 1 and not early.degraded
    finally:
        device.stop()


def test_a_tier_drains_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    cloud = start_tier(Tier.CLOUD, free_port(), None, {}, tmp_path)
    started = time.monotonic()
    cloud.stop()
    assert cloud.process.returncode == 0, cloud.log_path.read_text()[-2000:]
    assert time.monotonic() - started < 10
