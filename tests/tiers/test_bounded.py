"""Bounded: over a tier's or a stream's in-flight limit, RESOURCE_EXHAUSTED at once; a frozen next tier
costs a request its deadline, never more, and the answer comes degraded.

The edge is frozen with SIGSTOP after the device has connected to it, so its
connection stays open (keepalive would call it dead only after ~5 s) and every
sample sent to it waits: exactly what fills a tier with requests in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tiers import Tier
from splitexit.testbed import Testbed, free_port

TIMEOUT_S = 1.0
TO_CLOUD = pb.Plan(threshold=1.0)


@pytest.fixture
def device(tmp_path: Path, images: list[LabelledImage]) -> Iterator[str]:
    """A device whose edge is connected, then frozen; its address."""
    settings = {Tier.DEVICE: {"max_in_flight": "2", "stream_concurrency": "1", "default_timeout_s": str(TIMEOUT_S)}}
    with Testbed({tier: free_port() for tier in Tier}, settings, log_dir=tmp_path) as bed:
        with grpc.insecure_channel(bed.device_address) as channel:  # connect the device to the edge
            pb_grpc.DeviceStub(channel).Infer(pb.InferRequest(image=images[0].png, policy=TO_CLOUD), timeout=10)
        edge = bed.processes[Tier.EDGE].process
        os.kill(edge.pid, signal.SIGSTOP)
        try:
            yield bed.device_address
        finally:
            os.kill(edge.pid, signal.SIGCONT)


async def timed(call: object) -> tuple[float, pb.InferResponse | grpc.StatusCode]:
    started = time.monotonic()
    try:
        outcome: pb.InferResponse | grpc.StatusCode = await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        outcome = exc.code()
    return time.monotonic() - started, outcome


def test_over_the_in_flight_limit_requests_are_refused_at_once(device: str, images: list[LabelledImage]) -> None:
    async def go() -> list[tuple[float, pb.InferResponse | grpc.StatusCode]]:
        async with grpc.aio.insecure_channel(device) as channel:
            stub = pb_grpc.DeviceStub(channel)
            # no gRPC deadline: the device's default_timeout_s (1 s) is the deadline
            calls = [stub.Infer(pb.InferRequest(image=image.png, policy=TO_CLOUD)) for image in images[:6]]
            return await asyncio.gather(*(timed(call) for call in calls))

    outcomes = asyncio.run(go())
    refused = [seconds for seconds, outcome in outcomes if outcome == grpc.StatusCode.RESOURCE_EXHAUSTED]
    degraded = [(s, o) for s, o in outcomes if isinstance(o, pb.InferResponse)]
    assert len(degraded) == 2 and len(refused) == 4, outcomes
    assert max(refused) < TIMEOUT_S / 2  # at once, not after the admitted ones
    for seconds, answer in degraded:  # the default deadline, no more: then the device's own exit
        assert answer.degraded and answer.degradation.reason == pb.DEGRADED_REASON_NEXT_TIER_TOO_SLOW
        assert TIMEOUT_S * 0.9 < seconds < TIMEOUT_S + 0.5


def test_a_stream_over_its_limit_refuses_the_extra_requests_and_answers_the_rest(
    device: str, images: list[LabelledImage]
) -> None:
    async def go() -> list[pb.StreamResponse]:
        async with grpc.aio.insecure_channel(device) as channel:
            requests = [pb.InferRequest(request_id=f"r{k}", image=images[k].png, policy=TO_CLOUD) for k in range(3)]
            return [answer async for answer in pb_grpc.DeviceStub(channel).InferStream(iter(requests), timeout=10)]

    answers = asyncio.run(go())
    assert sorted(a.error.request_id or a.response.request_id for a in answers) == ["r0", "r1", "r2"]
    refused = [a.error for a in answers if a.HasField("error")]
    assert len(refused) == 2 and all(e.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for e in refused)
    assert all("stream" in e.message for e in refused)
    (answered,) = [a.response for a in answers if a.HasField("response")]
    assert answered.degraded
