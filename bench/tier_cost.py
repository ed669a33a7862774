"""Where a resuming tier's time goes, per sample, with gRPC taken out: the cloud tier run inside this process.

:func:`in_process_rate` feeds a real :class:`~splitexit.shared.node.TierNode` of
the cloud the bench's ``ContinueRequest`` s as a link sends them -- columns of
:data:`COLUMN`, two at once (64 in flight) -- through its request pipeline and
``Tier`` servicer as one group each (``Pipeline.run_many``), but with no gRPC,
no sockets and no other process: its rate beside the cloud tier fed by a link
(``throughput.cloud_alone_64``) says how much of that tier's cost is gRPC and
how much is the tier's own work; its CPU µs per sample, beside bare
onnxruntime's µs per sample on the same blocks at its best batch
(``bare.cloud_blocks``), says how much of that work is the model.

:func:`stage_costs` times the per-sample stages of that work one by one, each on
real messages. A sample of a column meets: unpacking the column (decoded, checked,
its plans parsed, once per column), the pipeline for the group (metrics, validation,
admission, deadline), building its answer and hop, counting the hops in metrics
(once per group), and (de)serializing the answer: issue 20 asks for ≤ 10 µs each. A
lone ``ContinueRequest`` (a link with columns off, a ``ContinueStream``) meets its own
parse, pipeline, activation decode and plan parse instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from splitexit.cloud.settings import CloudSettings
from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.columns import pack, unpack
from splitexit.shared.deadlines import Deadline
from splitexit.shared.node import TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tensors import decode
from splitexit.shared.tier_servicer import TierServicer

METHOD = "ContinueBatches"  # the metrics label the link's requests are counted under
COLUMN = 32  # samples per ContinueColumns, as a link packs them at 64 in flight (the tier's max_batch)


async def in_process_rate(requests: Sequence[pb.ContinueRequest], in_flight: int) -> dict[str, float]:
    """Samples/s and CPU µs per sample of the cloud serving ``requests`` in this process: columns of
    :data:`COLUMN`, ``in_flight`` samples at once."""
    node = TierNode.from_settings(CloudSettings())
    servicer = TierServicer(node)
    columns = [pack(_linked(requests[i : i + COLUMN])).columns[0] for i in range(0, len(requests), COLUMN)]

    async def sender(queue: Iterator[pb.ContinueColumns]) -> None:
        for column in queue:
            for answer in await _answers(node, servicer, column):
                pb.StreamResponse(response=answer).SerializeToString()  # what the stream would send

    try:
        for warm_up in (True, False):  # the first pass loads sessions and fills caches
            queue = iter(columns[: len(columns) // 10] if warm_up else columns)
            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(sender(queue) for _ in range(max(in_flight // COLUMN, 1))))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await node.close()
    served = sum(len(column.request_ids) for column in columns)
    return {"per_s": served / wall, "cpu_us": 1e6 * cpu / served}


async def _answers(node: TierNode, servicer: TierServicer, column: pb.ContinueColumns) -> list[pb.InferResponse]:
    """Every answer to ``column``, through the pipeline as one group, as the ``Tier`` servicer takes it."""
    entries = unpack(column, node.registry.get, node.pipeline.where)
    answers = []
    async with contextlib.aclosing(node.pipeline.run_many(METHOD, entries, servicer.resume_many)) as chunks:
        async for chunk in chunks:
            for _, answer in chunk:
                if not isinstance(answer, pb.InferResponse):
                    raise RuntimeError(f"the in-process cloud answered an error: {answer.message}")
                answers.append(answer)
    return answers


def _linked(requests: Sequence[pb.ContinueRequest]) -> list[pb.ContinueRequest]:
    """Fresh copies of ``requests`` as a link sends them: each with an id and a timeout."""
    copies = []
    for n, request in enumerate(requests):
        copy = pb.ContinueRequest()
        copy.CopyFrom(request)
        copy.request_id, copy.timeout_s = f"bench-{n}", 10.0
        copies.append(copy)
    return copies


def stage_costs(request: pb.ContinueRequest, repeats: int) -> dict[str, float]:
    """µs per sample of each per-sample stage of a resuming tier, on ``request`` (one the link sends)."""
    node = TierNode.from_settings(CloudSettings())
    servicer = TierServicer(node)
    model = node.registry.get(request.model)
    spec = model.manifest.block(request.next_block).input
    (linked,) = _linked([request])
    column = pack(_linked([request] * COLUMN)).columns[0]
    answer = asyncio.run(_answers(node, servicer, column))[0]
    wire_request, wire_answer = linked.SerializeToString(), answer.SerializeToString()
    sample = servicer._sample(linked, Deadline.after(60.0))
    node._prepare(sample)
    (run,) = model.run(sample.start_block, sample.x, [sample.thresholds], [sample.stop_block])
    timings = pb.StageTimings()
    passes = [(answer.hops[0], (1.0,) * model.manifest.num_blocks, answer)] * COLUMN

    async def passthrough(message: pb.ContinueRequest, deadline: object) -> None:
        return None

    async def passthrough_group(requests: list[Any], deadlines: list[Deadline]) -> AsyncIterator[list[tuple[int, Any]]]:
        yield [(i, None) for i in range(len(requests))]

    async def pipelined() -> None:
        for _ in range(repeats):
            await node.pipeline.run(METHOD, _linked([request])[0], passthrough)

    async def grouped() -> None:
        for _ in range(repeats // COLUMN):
            entries = unpack(column, node.registry.get, node.pipeline.where)
            async with contextlib.aclosing(node.pipeline.run_many(METHOD, entries, passthrough_group)) as chunks:
                async for _ in chunks:
                    pass

    stages: dict[str, Callable[[], Any]] = {
        "parse_request": lambda: pb.ContinueRequest.FromString(wire_request),
        "decode_activation": lambda: decode(request.activation, spec, "the activation"),
        "parse_plan": lambda: Plan.from_proto(request.policy, model.manifest.num_blocks, TierThresholds.name),
        "answer": lambda: node._with_hop(sample, run, timings, node._answer(sample, run), 0),
        "serialize_answer": lambda: answer.SerializeToString(),
        "parse_answer": lambda: pb.InferResponse.FromString(wire_answer),
    }
    costs = {name: _microseconds(stage, repeats) for name, stage in stages.items()}
    per_column = {
        "unpack_column": lambda: unpack(column, node.registry.get, "cloud"),
        "metrics_hops": lambda: node.metrics.observe_hops(model.name, passes),
    }
    costs |= {name: _microseconds(stage, repeats // COLUMN) / COLUMN for name, stage in per_column.items()}
    costs["pipeline"] = _seconds(pipelined) * 1e6 / repeats  # a message copy included
    unpacking = costs["unpack_column"]
    costs["pipeline_group"] = _seconds(grouped) * 1e6 / (repeats // COLUMN * COLUMN) - unpacking
    asyncio.run(node.close())
    return costs


def _seconds(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    asyncio.run(work())
    return time.perf_counter() - started


def _microseconds(stage: Callable[[], Any], repeats: int) -> float:
    stage()
    started = time.perf_counter()
    for _ in range(repeats):
        stage()
    return 1e6 * (time.perf_counter() - started) / repeats
