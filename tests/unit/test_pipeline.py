"""The request pipeline in one process: every request answered or given its own error, counted once, never raising."""

from __future__ import annotations

import asyncio

import grpc

from splitexit.shared.admission import InFlightLimit
from splitexit.shared.deadlines import Deadline
from splitexit.shared.errors import ServingError, UnknownModel
from splitexit.shared.metrics import TierMetrics
from splitexit.shared.pipeline import MAX_REQUEST_ID, Pipeline, Undecodable
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier

MODEL = "fmnist-cnn"


def pipeline(limit: int = 4) -> Pipeline:
    metrics = TierMetrics(Tier.DEVICE, [MODEL])
    line = Pipeline(
        metrics=metrics,
        admission=InFlightLimit(limit, "the device", "SPLITEXIT_DEVICE_MAX_IN_FLIGHT"),
        where="device",
        default_timeout_s=5.0,
    )
    line.default_model = MODEL  # what a request that names no model (or cannot be read) is counted under
    return line


def counted(line: Pipeline, code: str) -> float:
    labels = {"tier": Tier.DEVICE, "model": MODEL, "method": "Infer", "code": code}
    return line.metrics.registry.get_sample_value("splitexit_requests_total", labels) or 0.0


async def echo(request: pb.InferRequest, deadline: Deadline) -> pb.InferResponse:
    return pb.InferResponse(request_id=request.request_id, model=request.model, confidence=deadline.remaining())


def test_an_answer_gets_an_id_a_deadline_and_one_count() -> None:
    line = pipeline()
    answer = asyncio.run(line.run("Infer", pb.InferRequest(model=MODEL, timeout_s=2.0), echo))
    assert isinstance(answer, pb.InferResponse) and len(answer.request_id) == 32
    assert 0 < answer.confidence <= 2.0  # the message's timeout_s, sooner than the tier's default
    assert counted(line, "OK") == 1 and line.admission.in_flight == 0


def test_each_failure_is_the_requests_own_error_with_its_status() -> None:
    line = pipeline()

    async def unknown(request: pb.InferRequest, deadline: Deadline) -> pb.InferResponse:
        raise UnknownModel("no model named nope")

    async def bug(request: pb.InferRequest, deadline: Deadline) -> pb.InferResponse:
        raise KeyError("oops")

    async def each() -> list[object]:
        return [
            await line.run("Infer", Undecodable(ValueError("truncated")), echo),
            await line.run("Infer", pb.InferRequest(model=MODEL, request_id="x" * (MAX_REQUEST_ID + 1)), echo),
            await line.run("Infer", pb.InferRequest(model=MODEL, timeout_s=-1.0), echo),
            await line.run("Infer", pb.InferRequest(model=MODEL), unknown),
            await line.run("Infer", pb.InferRequest(model=MODEL), bug),
        ]

    outcomes = asyncio.run(each())
    assert all(isinstance(outcome, ServingError) for outcome in outcomes)
    codes = [outcome.code for outcome in outcomes]  # type: ignore[union-attr]
    Code = grpc.StatusCode
    assert codes == [Code.INVALID_ARGUMENT] * 3 + [Code.NOT_FOUND, Code.INTERNAL]
    assert outcomes[-1].message == "internal error in the device (KeyError); see its log"  # type: ignore[union-attr]
    assert counted(line, "INVALID_ARGUMENT") == 3 and counted(line, "NOT_FOUND") == 1 and counted(line, "INTERNAL") == 1


def test_admission_refuses_beyond_the_tiers_and_the_streams_limits_and_frees_slots() -> None:
    line = pipeline(limit=2)
    stream = InFlightLimit(1, "this stream", "SPLITEXIT_DEVICE_STREAM_CONCURRENCY")
    release = asyncio.Event()

    async def held(request: pb.InferRequest, deadline: Deadline) -> pb.InferResponse:
        await release.wait()
        return pb.InferResponse(request_id=request.request_id)

    async def go() -> list[object]:
        first = asyncio.create_task(line.run("Infer", pb.InferRequest(model=MODEL), held, None, (stream,)))
        second = asyncio.create_task(line.run("Infer", pb.InferRequest(model=MODEL), held))
        await asyncio.sleep(0)
        refused = [
            await line.run("Infer", pb.InferRequest(model=MODEL), held, None, (stream,)),  # the stream is full
            await line.run("Infer", pb.InferRequest(model=MODEL), held),  # the tier is full
        ]
        release.set()
        return [*refused, await first, await second]

    stream_full, tier_full, *answered = asyncio.run(go())
    assert isinstance(stream_full, ServingError) and "this stream has 1 requests in flight" in stream_full.message
    assert isinstance(tier_full, ServingError) and "SPLITEXIT_DEVICE_MAX_IN_FLIGHT" in tier_full.message
    assert stream_full.code == tier_full.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert all(isinstance(answer, pb.InferResponse) for answer in answered)
    assert (line.admission.in_flight, stream.in_flight) == (0, 0)


def test_a_transport_deadline_is_enforced() -> None:
    line = pipeline()

    async def slow(request: pb.InferRequest, deadline: Deadline) -> pb.InferResponse:
        await asyncio.sleep(5)
        return pb.InferResponse()

    outcome = asyncio.run(line.run("Infer", pb.InferRequest(model=MODEL), slow, Deadline.after(0.05)))
    assert isinstance(outcome, ServingError) and outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
