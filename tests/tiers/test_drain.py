"""SIGTERM on the device: health turns NOT_SERVING first, requests are still served for the grace, an
open stream answers everything it accepted and ends UNAVAILABLE, and the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port

GRACE_S = 1.5
EVERY_S = 0.02


@pytest.fixture
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    settings = {Tier.DEVICE: {"drain_grace_s": str(GRACE_S)}}
    with Testbed({tier: free_port() for tier in Tier}, settings, log_dir=tmp_path_factory.mktemp("logs")) as testbed:
        yield testbed


async def watch_health(address: str, seen: dict[str, float], done: asyncio.Event) -> None:
    """Poll Check every 20 ms: when NOT_SERVING was first seen."""
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while not done.is_set():
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    seen.setdefault("not_serving", time.monotonic())
            except grpc.aio.AioRpcError:
                seen.setdefault("check_refused", time.monotonic())
            await asyncio.sleep(EVERY_S)


async def unary_until_refused(address: str, image: bytes, seen: dict[str, float], done: asyncio.Event) -> int:
    """New unary calls every 20 ms until one is refused; how many were answered."""
    answered = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DeviceStub(channel)
        while not done.is_set():
            try:
                await stub.Infer(pb.InferRequest(image=image), timeout=5)
                answered += 1
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                seen.setdefault("refused", time.monotonic())
                return answered
            await asyncio.sleep(EVERY_S)
    return answered


async def stream_until_it_ends(
    address: str, images: list[LabelledImage], sent: dict[str, float]
) -> tuple[set[str], grpc.StatusCode | None]:
    """Send on one InferStream every 20 ms until it ends; the ids answered and how the stream ended."""
    answered: set[str] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.DeviceStub(channel).InferStream()

        async def write() -> None:
            for n in range(10_000):
                request_id = f"s{n}"
                sent[request_id] = time.monotonic()
                try:
                    await call.write(pb.InferRequest(request_id=request_id, image=images[n % len(images)].png))
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    return
                await asyncio.sleep(EVERY_S)

        writer = asyncio.create_task(write())
        try:
            async for response in call:
                assert response.HasField("response"), response.error
                answered.add(response.response.request_id)
        except grpc.aio.AioRpcError as exc:
            return answered, exc.code()
        finally:
            writer.cancel()
    return answered, None


def test_sigterm_drains_the_device_without_losing_an_accepted_request(
    bed: Testbed, images: list[LabelledImage]
) -> None:
    device = bed.processes[Tier.DEVICE]
    seen: dict[str, float] = {}
    sent: dict[str, float] = {}

    async def go() -> tuple[int, set[str], grpc.StatusCode | None]:
        done = asyncio.Event()
        health = asyncio.create_task(watch_health(bed.device_address, seen, done))
        unary = asyncio.create_task(unary_until_refused(bed.device_address, images[0].png, seen, done))
        stream = asyncio.create_task(stream_until_it_ends(bed.device_address, images[:20], sent))
        await asyncio.sleep(0.5)
        seen["sigterm"] = time.monotonic()
        device.process.send_signal(signal.SIGTERM)
        answered_ids, ended = await asyncio.wait_for(stream, 20)
        answered = await asyncio.wait_for(unary, 20)
        done.set()
        await health
        return answered, answered_ids, ended

    answered, answered_ids, ended = asyncio.run(go())
    assert device.process.wait(timeout=20) == 0, device.log_path.read_text()[-2000:]
    assert "not_serving" in seen and seen["not_serving"] - seen["sigterm"] < 0.5
    assert seen["refused"] - seen["not_serving"] >= GRACE_S - 0.3, seen  # balancers had the grace to look elsewhere
    assert answered > 0
    assert ended == grpc.StatusCode.UNAVAILABLE  # the stream said it stopped accepting
    # everything sent before the device stopped reading was answered
    stopped_reading = seen["not_serving"] + GRACE_S
    early = {request_id for request_id, at in sent.items() if at < stopped_reading - 0.2}
    assert early and early <= answered_ids, sorted(early - answered_ids)[:10]
