"""Steady, bounded load on a device, and what happened to every request: the load the fault scenarios run under.

Requests leave at a fixed rate whatever the answers do (an open loop), each
with a deadline, at most ``max_in_flight`` at once (beyond that a request is
not sent and counted as such). Every other request asks for the final exit
(α = 1, so it needs the edge and the cloud), the others use α = 0.9, so an
outage anywhere downstream shows. Each :class:`Outcome` records when the
request left and finished, its status, and, if answered, whether it was
degraded and which tiers it crossed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import grpc

from splitexit.samples import LabelledImage
from splitexit.shared.link import link_options
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.schema import json_name
from splitexit.shared.tiers import Tier

CLIENT_SLACK_S = 1.0  # the client's own deadline is the request's plus this, so the server's status comes first


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One request of the load."""

    sent_at: float  # time.monotonic()
    finished_at: float
    deadline_s: float
    asked_final: bool  # α = 1: only the final exit (the cloud) may answer it in full
    code: str  # "OK" or the gRPC status name
    degraded: bool = False
    reason: str = ""  # the degradation reason, lowercase
    tiers: tuple[str, ...] = ()  # the tiers its answer's hops crossed
    correct: bool = False

    @property
    def answered(self) -> bool:
        return self.code == "OK"

    @property
    def unflagged_early(self) -> bool:
        """Answered from an earlier exit than it asked for, without saying so (never should be)."""
        return self.answered and self.asked_final and not self.degraded and self.tiers[-1:] != ("cloud",)

    @property
    def late(self) -> bool:
        """It had neither an answer nor a status by its deadline (plus 100 ms of network)."""
        return self.finished_at - self.sent_at > self.deadline_s + 0.1


async def steady_load(
    address: str, images: list[LabelledImage], rate: float, seconds: float, deadline_s: float, max_in_flight: int = 64
) -> tuple[list[Outcome], int]:
    """Send ``rate`` requests per second for ``seconds``; the outcomes, and how many could not be sent (too many in
    flight)."""
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    skipped = 0
    # A client that reconnects as fast as the tiers' links do (gRPC's default backoff grows to minutes).
    async with grpc.aio.insecure_channel(address, options=link_options(1 << 20)) as channel:
        stub = pb_grpc.DeviceStub(channel)
        started = time.monotonic()
        for count, image in zip(itertools.count(), itertools.cycle(images)):
            due = started + count / rate
            if due - started >= seconds:
                break
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            if len(tasks) >= max_in_flight:
                skipped += 1
                continue
            threshold = 1.0 if count % 2 == 0 else 0.9
            task = asyncio.create_task(_one(stub, image, threshold, deadline_s, outcomes))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return sorted(outcomes, key=lambda outcome: outcome.sent_at), skipped


async def _one(
    stub: pb_grpc.DeviceStub, image: LabelledImage, threshold: float, deadline_s: float, outcomes: list[Outcome]
) -> None:
    request = pb.InferRequest(image=image.png, policy=pb.Plan(threshold=threshold), timeout_s=deadline_s)
    sent_at = time.monotonic()
    try:
        answer = await stub.Infer(request, timeout=deadline_s + CLIENT_SLACK_S)
    except grpc.aio.AioRpcError as exc:
        outcomes.append(
            Outcome(
                sent_at=sent_at,
                finished_at=time.monotonic(),
                deadline_s=deadline_s,
                asked_final=threshold == 1.0,
                code=exc.code().name,
            )
        )
        return
    outcomes.append(
        Outcome(
            sent_at=sent_at,
            finished_at=time.monotonic(),
            deadline_s=deadline_s,
            asked_final=threshold == 1.0,
            code="OK",
            degraded=answer.degraded,
            reason=json_name(pb.DegradedReason.DESCRIPTOR, answer.degradation.reason).lower()
            if answer.degraded
            else "",
            tiers=tuple(Tier.from_proto(hop.tier).value for hop in answer.hops),
            correct=answer.label == image.label,
        )
    )
