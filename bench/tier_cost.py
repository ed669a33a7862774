"""Where a resuming tier's time goes, per sample, with gRPC taken out: the cloud tier run inside this process.

:func:`in_process_rate` feeds a real :class:`~splitexit.shared.node.TierNode` of
the cloud the same ``ContinueRequest`` s the bench's link sends it, ``in_flight``
at once, through its request pipeline and ``Tier`` servicer, but with no gRPC,
no sockets and no other process: its rate beside the cloud tier fed by a link
(``throughput.cloud_alone_64``) says how much of that tier's cost is gRPC and
how much is the tier's own work; its CPU µs per sample, beside bare
onnxruntime's µs per sample on the same blocks at its best batch
(``bare.cloud_blocks``), says how much of that work is the model.

:func:`stage_costs` times the per-sample stages of that work one by one, each on
real messages: the pipeline around a request (metrics, validation, admission,
deadline), decoding the activation (alone, and per sample of a column of 32),
parsing the plan, counting the hop in metrics, and (de)serializing the
messages. Issue 20 asks for ≤ 10 µs each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from splitexit.cloud.settings import CloudSettings
from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.columns import pack, unpack
from splitexit.shared.node import TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tensors import decode
from splitexit.shared.tier_servicer import TierServicer

METHOD = "ContinueBatches"  # the metrics label the link's requests are counted under
COLUMN = 32  # samples per ContinueColumns when timing a column's unpacking per sample


async def in_process_rate(requests: Sequence[pb.ContinueRequest], in_flight: int) -> dict[str, float]:
    """Samples/s and CPU µs per sample of the cloud serving ``requests`` in this process, ``in_flight`` at once."""
    node = TierNode.from_settings(CloudSettings())
    servicer = TierServicer(node)

    async def sender(queue: Iterator[pb.ContinueRequest]) -> None:
        for request in queue:
            (await _answer(node, servicer, request)).SerializeToString()  # what the stream would send

    try:
        for warm_up in (True, False):  # the first pass loads sessions and fills caches
            queue = iter(requests[: len(requests) // 10] if warm_up else requests)
            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(sender(queue) for _ in range(in_flight)))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await node.close()
    return {"per_s": len(requests) / wall, "cpu_us": 1e6 * cpu / len(requests)}


async def _answer(node: TierNode, servicer: TierServicer, request: pb.ContinueRequest) -> pb.InferResponse:
    answer = await node.pipeline.run(METHOD, _copy(request), servicer.resume)
    if not isinstance(answer, pb.InferResponse):
        raise RuntimeError(f"the in-process cloud answered an error: {answer.message}")
    return answer


def _copy(request: pb.ContinueRequest) -> pb.ContinueRequest:
    """A fresh message per call, as one parsed off the wire is."""
    copy = pb.ContinueRequest()
    copy.CopyFrom(request)
    copy.request_id = "bench"
    return copy


def stage_costs(request: pb.ContinueRequest, repeats: int) -> dict[str, float]:
    """µs per sample of each per-sample stage of a resuming tier, on ``request`` (one the link sends)."""
    node = TierNode.from_settings(CloudSettings())
    model = node.registry.get(request.model)
    spec = model.manifest.block(request.next_block).input
    answer = asyncio.run(_answer(node, TierServicer(node), request))
    hop, wire_request, wire_answer = answer.hops[0], request.SerializeToString(), answer.SerializeToString()

    async def passthrough(message: pb.ContinueRequest, deadline: object) -> None:
        return None

    async def pipelined() -> None:
        for _ in range(repeats):
            await node.pipeline.run(METHOD, _copy(request), passthrough)

    stages: dict[str, Callable[[], Any]] = {
        "parse_request": lambda: pb.ContinueRequest.FromString(wire_request),
        "decode_activation": lambda: decode(request.activation, spec, "the activation"),
        "parse_plan": lambda: Plan.from_proto(request.policy, model.manifest.num_blocks, TierThresholds.name),
        "metrics_hop": lambda: node.metrics.observe_hop(model.name, hop, (1.0,) * model.manifest.num_blocks, answer),
        "serialize_answer": lambda: answer.SerializeToString(),
        "parse_answer": lambda: pb.InferResponse.FromString(wire_answer),
    }
    costs = {name: _microseconds(stage, repeats) for name, stage in stages.items()}
    linked = _copy(request)
    linked.timeout_s = 10.0  # as a link sends it: every request has one
    column = pack([linked] * COLUMN).columns[0]
    costs["unpack_column"] = (
        _microseconds(lambda: unpack(column, node.registry.get, "cloud"), repeats // COLUMN) / COLUMN
    )
    started = time.perf_counter()
    asyncio.run(pipelined())
    costs["pipeline"] = 1e6 * (time.perf_counter() - started) / repeats  # a message copy included
    asyncio.run(node.close())
    return costs


def _microseconds(stage: Callable[[], Any], repeats: int) -> float:
    stage()
    started = time.perf_counter()
    for _ in range(repeats):
        stage()
    return 1e6 * (time.perf_counter() - started) / repeats
