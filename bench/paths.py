"""Served ÷ bare per path, and what serving adds beyond the transport floor per hop.

A *path* is a model and the tier whose exit answers: the device (α = 0: block
1's exit), the edge (α = 1 on the device's exits, 0 at the edge's first) or the
cloud (α = 1: the final exit). Each path's requests go one at a time through the
running tiers; bare onnxruntime runs the same preparation and blocks in this
process; a gRPC echo of the same sizes gives the floor of each hop (a unary
call from the client, a stream ping-pong on each link crossed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.bare import BareChain, sequential_seconds
from bench.echo import floor
from bench.rates import sequential
from splitexit.policies.chain import Chain
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier


@dataclass(kw_only=True)
class PathInputs:
    """One model's inputs: as requests for the tiers, and as raw values with their preparation for bare runs."""

    model: str
    chain: BareChain
    tiers: Chain
    requests: list[pb.InferRequest]
    raw: Sequence[object]
    prepare: Callable[[object], np.ndarray]


def exit_plans(tiers: Chain) -> dict[str, pb.Plan]:
    """A plan that makes each tier answer: the device, the edge (its first exit), the cloud."""
    edge_first = tiers.hosted[Tier.DEVICE].last + 1
    at_edge = [1.0] * tiers.num_blocks
    at_edge[edge_first - 1] = 0.0
    return {
        "device": pb.Plan(threshold=0.0),
        "edge": pb.Plan(exit_thresholds=at_edge),
        "cloud": pb.Plan(threshold=1.0),
    }


async def measure_path(device: str, echo: str, inputs: PathInputs, plan: pb.Plan) -> dict[str, float]:
    """p50 served and bare latency of one path, their ratio, the floor and the overhead per hop."""
    requests = [_with_plan(request, plan) for request in inputs.requests]
    await sequential(device, requests[:10])  # warm the path
    served_s, answers = await sequential(device, requests)
    exit_block = answers[0].exit_block
    bare_s = sequential_seconds(inputs.chain, inputs.raw, inputs.prepare, exit_block)
    links = len(answers[0].hops) - 1
    unary = await floor(echo, requests[0].ByteSize(), answers[0].ByteSize())
    link_bytes = answers[0].hops[0].bytes_sent if links else 0
    stream = await floor(echo, link_bytes, answers[0].ByteSize()) if links else {"stream_p50_s": 0.0}
    served, bare = float(np.median(served_s)), float(np.median(bare_s))
    floor_s = unary["unary_p50_s"] + links * stream["stream_p50_s"]
    return {
        "exit_block": exit_block,
        "served_p50_ms": 1e3 * served,
        "bare_p50_ms": 1e3 * bare,
        "served_over_bare": served / bare,
        "floor_ms": 1e3 * floor_s,
        "unary_floor_ms": 1e3 * unary["unary_p50_s"],
        "stream_floor_ms": 1e3 * stream["stream_p50_s"],
        "hops": links + 1,
        "overhead_per_hop_us": 1e6 * (served - bare - floor_s) / (links + 1),
    }


def _with_plan(request: pb.InferRequest, plan: pb.Plan) -> pb.InferRequest:
    copy = pb.InferRequest()
    copy.CopyFrom(request)
    copy.policy.CopyFrom(plan)
    return copy
