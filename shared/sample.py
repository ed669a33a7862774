"""The one record of a sample inside a tier, from the moment it arrives to its answer.

A servicer makes a :class:`Sample` once, from the request the pipeline let in
(the device from an ``InferRequest``, the edge and cloud from a
``ContinueRequest``); the node fills in this tier's exit rule for it and the
batcher queues it, runs it in a batch and hands back what its blocks gave (a
:class:`~splitexit.shared.runtime.LocalRun`). It carries the policy's
:class:`~splitexit.policies.plan.Plan` as it came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from splitexit.policies.plan import Plan
from splitexit.shared.deadlines import Deadline
from splitexit.shared.runtime import HostedModel, LocalRun

BatchKey = tuple[str, int, int, tuple[int, ...]]  # model, id of its loaded package, first block, one sample's shape


@dataclass(eq=False, kw_only=True)
class Sample:
    """One sample in a tier: what it is, how it may exit here, its deadline and what its stages took."""

    model: HostedModel
    request_id: str
    start_block: int
    x: np.ndarray  # block input (float tensor or token ids), batch axis of size 1
    plan: Plan  # the device's plan for this sample (no thresholds: each tier's own)
    top_k: int
    received_at: float  # time.perf_counter() when the request arrived
    deadline: Deadline
    allow_degraded: bool = True
    decode_s: float = 0.0  # image decode (device) before the tier runs it
    codec_s: float = 0.0  # activation decode (edge, cloud) before the tier runs it
    # This tier's exit rule for the sample, set before it is queued (TierNode.process)
    thresholds: Sequence[float] = ()
    stop_block: int = 0
    # The batcher's: when it queued, and what its blocks gave (seconds queued, the run)
    queued_at: float = 0.0
    outcome: asyncio.Future[tuple[float, LocalRun]] = field(init=False, repr=False)

    @property
    def key(self) -> BatchKey:
        """The samples it may run in one batch with: same package, first block and per-sample shape."""
        return self.model.name, id(self.model), self.start_block, self.x.shape[1:]
