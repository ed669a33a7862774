"""``make faults``: tiers killed, links cut and throttled, tiers paused and drained, under steady load.

Each scenario runs the three tiers in their own network namespaces
(:class:`~splitexit.netns.NetnsTestbed`) under :func:`~bench.steady_load.steady_load`:
some seconds of normal traffic, the fault for some seconds, then the fix and
some seconds more. It reports what happened to every request -- answered,
answered degraded (flagged), failed by status, past its deadline -- and how long
after the recovered tier reported SERVING the first full answer through it was
sent. ``tests/deploy/test_faults.py`` asserts on these results; ``main`` writes them to
``bench/results/faults.json`` and the faults page (``docs/results/faults.md``), with
the fuzz run's figures (:mod:`bench.hostile`) and a soak (:mod:`bench.soak`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.steady_load import Outcome, steady_load
from splitexit.netns import NetnsTestbed
from splitexit.samples import LabelledImage
from splitexit.shared.link import link_options
from splitexit.shared.tiers import Tier

EDGE, CLOUD, DEVICE = Tier.EDGE, Tier.CLOUD, Tier.DEVICE


@dataclass(frozen=True, kw_only=True)
class Fault:
    """What goes wrong, how it is undone, and which tier's return the recovery time is measured from."""

    name: str
    inject: Callable[[NetnsTestbed], None]
    heal: Callable[[NetnsTestbed], None]
    tier: Tier | None  # the tier whose health is watched (None: time recovery from the fix itself)
    outage: bool  # a tier behind the device is unusable: the target is ≥ 99 % answered during the fault
    recovers: bool = True  # full answers should return within a second of the fix


FAULTS = (
    Fault(
        name="edge killed (SIGKILL)",
        inject=lambda bed: bed.kill(EDGE),
        heal=lambda bed: bed.start(EDGE),
        tier=EDGE,
        outage=True,
    ),
    Fault(
        name="cloud killed (SIGKILL)",
        inject=lambda bed: bed.kill(CLOUD),
        heal=lambda bed: bed.start(CLOUD),
        tier=CLOUD,
        outage=True,
    ),
    Fault(
        name="device-edge link down",
        inject=lambda bed: bed.set_link("device-edge", False),
        heal=lambda bed: bed.set_link("device-edge", True),
        tier=None,
        outage=True,
    ),
    Fault(
        name="edge frozen (SIGSTOP)",
        inject=lambda bed: bed.pause(EDGE),
        heal=lambda bed: bed.resume(EDGE),
        tier=EDGE,
        outage=True,
    ),
    Fault(
        name="device-edge link throttled to 1 Mbit/s",
        inject=lambda bed: bed.shape("device-edge", "slow"),
        heal=lambda bed: bed.shape("device-edge", "none"),
        tier=None,
        outage=False,
        recovers=False,
    ),
    Fault(
        name="edge drained (SIGTERM)",
        inject=lambda bed: bed.terminate(EDGE),
        heal=lambda bed: bed.start(EDGE),
        tier=EDGE,
        outage=True,
    ),
    Fault(
        name="device drained (SIGTERM)",
        inject=lambda bed: bed.terminate(DEVICE),
        heal=lambda bed: bed.start(DEVICE),
        tier=DEVICE,
        outage=False,
    ),
)


@dataclass(kw_only=True)
class ScenarioResult:
    """What one fault did to the load."""

    fault: str
    sent: int
    answered: int
    degraded: int
    failed: dict[str, int]  # status -> count
    late: int  # neither answer nor status by the deadline
    unflagged_early: int  # answered from an earlier exit than asked for, without the degraded flag
    not_sent: int  # the client's own cap on requests in flight
    during_fault_sent: int
    during_fault_answered: int
    recovery_s: float | None  # from SERVING (or the fix) to the first full answer through the recovered tier
    not_serving_before_refusal_s: float | None  # a drained tier: NOT_SERVING on health before it refused
    dead_tiers: list[str] = field(default_factory=list)  # tiers not running after the fix

    @property
    def answered_during_fault(self) -> float:
        return self.during_fault_answered / max(self.during_fault_sent, 1)


async def _watch(address: str, until: asyncio.Event, seen: dict[str, float]) -> None:
    """Poll a tier's health every 20 ms: when it first showed NOT_SERVING, refused, and SERVING again.

    The channel reconnects as fast as a tier's link does: gRPC's default backoff
    (up to minutes) would see a restarted tier seconds late.
    """
    async with grpc.aio.insecure_channel(address, options=link_options(1 << 20)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while not until.is_set():
            try:
                status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)).status
                key = "serving" if status == health_pb2.HealthCheckResponse.SERVING else "not_serving"
            except grpc.aio.AioRpcError:
                key = "refused"
            if key != "serving" or "refused" in seen or "not_serving" in seen:  # SERVING counts once it was not
                seen.setdefault(key, time.monotonic())
            await asyncio.sleep(0.02)


async def _scenario(
    bed: NetnsTestbed,
    fault: Fault,
    images: list[LabelledImage],
    rate: float,
    phases: tuple[float, float, float],
    deadline_s: float,
) -> tuple[list[Outcome], int, dict[str, float]]:
    before, during, after = phases
    load = asyncio.create_task(steady_load(bed.device_address, images, rate, sum(phases), deadline_s))
    await asyncio.sleep(before)
    times = {"fault": time.monotonic()}
    done, seen = asyncio.Event(), {}
    watcher = asyncio.create_task(_watch(bed.address(fault.tier), done, seen)) if fault.tier else None
    await asyncio.to_thread(fault.inject, bed)
    await asyncio.sleep(max(times["fault"] + during - time.monotonic(), 0.0))
    times["heal"] = time.monotonic()
    await asyncio.to_thread(fault.heal, bed)
    times["healed"] = time.monotonic()
    outcomes, not_sent = await load
    done.set()
    if watcher is not None:
        await watcher
    return outcomes, not_sent, {**times, **{f"health_{key}": at for key, at in seen.items()}}


def run_scenario(
    bed: NetnsTestbed,
    fault: Fault,
    images: list[LabelledImage],
    rate: float = 20.0,
    phases: tuple[float, float, float] = (2.0, 4.0, 4.0),
    deadline_s: float = 1.0,
) -> ScenarioResult:
    """Run one fault under load on a running testbed and summarise what every request got."""
    outcomes, not_sent, times = asyncio.run(_scenario(bed, fault, images, rate, phases, deadline_s))
    return summarise(
        fault, outcomes, not_sent, times, [t.value for t, p in bed.processes.items() if p.process.poll() is not None]
    )


def summarise(
    fault: Fault, outcomes: list[Outcome], not_sent: int, times: dict[str, float], dead: list[str]
) -> ScenarioResult:
    during = [o for o in outcomes if times["fault"] <= o.sent_at < times["heal"]]
    serving = times.get("health_serving", times["healed"]) if fault.tier else times["heal"]
    through = {EDGE: "edge", CLOUD: "cloud", DEVICE: "device", None: "edge"}[fault.tier]
    full_after = [o for o in outcomes if o.sent_at >= serving and o.answered and not o.degraded and through in o.tiers]
    refused_at = times.get("health_refused")
    return ScenarioResult(
        fault=fault.name,
        sent=len(outcomes),
        answered=sum(o.answered for o in outcomes),
        degraded=sum(o.degraded for o in outcomes),
        failed=dict(Counter(o.code for o in outcomes if not o.answered)),
        late=sum(o.late for o in outcomes),
        unflagged_early=sum(o.unflagged_early for o in outcomes),
        not_sent=not_sent,
        during_fault_sent=len(during),
        during_fault_answered=sum(o.answered for o in during),
        recovery_s=(full_after[0].sent_at - serving) if fault.recovers and full_after else None,
        not_serving_before_refusal_s=(refused_at - times["health_not_serving"])
        if refused_at and "health_not_serving" in times
        else None,
        dead_tiers=dead,
    )
