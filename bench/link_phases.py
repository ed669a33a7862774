"""A device-edge link that degrades and recovers: where each policy's samples exit, their latency and cost, per phase.

Three real tiers in network namespaces (:class:`~splitexit.netns.NetnsTestbed`):
the device-edge link is rate-shaped with ``tc tbf`` and delayed by a
:mod:`~splitexit.delay_proxy`, and goes through :data:`PHASES` (100 Mbit/s and
5 ms one way, then 2 Mbit/s and 60 ms, then back). The device prices routes by
their measured times (``costs.measured``, the settings of
:mod:`bench.link_costs`). Every phase has its own real Fashion-MNIST test
images; each image is sent once per policy in :data:`POLICIES`, one request at
a time (no request waits behind another), so every policy meets the same link
at the same moment. A policy is a name: ``fixed@<α>`` is the fixed-thresholds
baseline at that α (spelled out in the request), any other name a device policy.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from splitexit.client import Client, request
from splitexit.netns import NetnsTestbed
from splitexit.results import ClientError
from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier

LINK = "device-edge"
FIXED_PREFIX = "fixed@"
POLICIES = ("fixed@0.7", "fixed@0.8", "fixed@0.9", "fixed@0.95", "fixed@0.99", "splitee-sw", "accuracy@0.5")
REQUEST_TIMEOUT_S = 30.0
MODEL = "fmnist-cnn"
COSTS_SHOWN_BY = "splitee"  # any learning policy's state shows the model's one cost model (measured, shared)


@dataclass(frozen=True, kw_only=True)
class LinkPhase:
    """One stretch of the run: the link's ``tbf`` profile, its one-way delay and how many images cross it."""

    name: str
    profile: str
    delay_ms: float
    samples: int


PHASES = (
    LinkPhase(name="fast (100 Mbit/s, 5 ms)", profile="wifi", delay_ms=5.0, samples=200),
    LinkPhase(name="slow (2 Mbit/s, 60 ms)", profile="3g", delay_ms=60.0, samples=400),
    LinkPhase(name="fast again (100 Mbit/s, 5 ms)", profile="wifi", delay_ms=5.0, samples=200),
)
SLOW_PHASE = 1  # the phase the target is about


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One request's outcome: who answered, how fast, whether right, at what cost (``tier`` None: it failed)."""

    tier: str | None
    latency_s: float
    correct: bool
    cost: float
    cost_final_layer: float
    degraded: bool
    error: str = ""


@dataclass(kw_only=True)
class PhaseStats:
    """One policy over one phase."""

    phase: str
    policy: str
    samples: int
    failed: int
    degraded: int
    shares: dict[str, float]  # exit tier -> share of the answered samples (adds to 1)
    accuracy: float
    p50_ms: float
    p95_ms: float
    mean_cost: float
    cost_vs_final_layer: float  # mean cost ÷ mean final-layer cost, both as measured then
    offload_p50_ms: float | None  # median latency of the answered samples that left the device (None: none did)
    latencies_ms: list[float]  # of every answered sample, in order
    errors: dict[str, int] = field(default_factory=dict)


def is_fixed(policy: str) -> bool:
    return policy.startswith(FIXED_PREFIX)


def request_for(image: LabelledImage, policy: str) -> pb.InferRequest:
    """``fixed@α``: the same α at every exit, in the request; any other name: that device policy decides."""
    if is_fixed(policy):
        return request(image.png, threshold=float(policy.removeprefix(FIXED_PREFIX)), timeout_s=REQUEST_TIMEOUT_S)
    return request(image.png, policy=policy, timeout_s=REQUEST_TIMEOUT_S)


def send(client: Client, image: LabelledImage, policy: str) -> Answer:
    started = time.perf_counter()
    try:
        answer = client.infer_request(request_for(image, policy), REQUEST_TIMEOUT_S + 5).message
    except ClientError as exc:
        return Answer(
            tier=None,
            latency_s=time.perf_counter() - started,
            correct=False,
            cost=0.0,
            cost_final_layer=0.0,
            degraded=False,
            error=exc.code.name,
        )
    latency_s = time.perf_counter() - started
    tier = Tier.from_proto(answer.exit_tier).value
    return Answer(
        tier=tier,
        latency_s=latency_s,
        correct=answer.label == image.label,
        cost=answer.cost,
        cost_final_layer=answer.cost_final_layer,
        degraded=answer.degraded,
    )


def summarize(phase: str, policy: str, answers: Sequence[Answer]) -> PhaseStats:
    """Shares, accuracy (over every sample: a failed one counts as wrong), latency percentiles and cost."""
    answered = [a for a in answers if a.tier is not None]
    if not answered:
        raise RuntimeError(f"{policy} got no answer in the phase {phase!r}: {Counter(a.error for a in answers)}")
    tiers = Counter(a.tier for a in answered)
    latencies_ms = [round(a.latency_s * 1e3, 2) for a in answered]
    p50, p95 = np.percentile(latencies_ms, [50, 95])
    offloaded = [ms for ms, a in zip(latencies_ms, answered, strict=True) if a.tier != Tier.DEVICE.value]
    mean_cost = float(np.mean([a.cost for a in answered]))
    return PhaseStats(
        phase=phase,
        policy=policy,
        samples=len(answers),
        failed=len(answers) - len(answered),
        degraded=sum(a.degraded for a in answered),
        shares={tier.value: tiers[tier.value] / len(answered) for tier in Tier},
        accuracy=sum(a.correct for a in answers) / len(answers),
        p50_ms=float(p50),
        p95_ms=float(p95),
        mean_cost=mean_cost,
        cost_vs_final_layer=mean_cost / float(np.mean([a.cost_final_layer for a in answered])),
        offload_p50_ms=float(np.median(offloaded)) if offloaded else None,
        latencies_ms=latencies_ms,
        errors=dict(Counter(a.error for a in answers if a.error)),
    )


@dataclass
class LinkPhasesRun:
    """What :func:`run_link_phases` measured: per phase and policy, and the link's measured cost at each phase's end."""

    phases: list[LinkPhase]
    policies: list[str]
    _: KW_ONLY
    stats: list[PhaseStats] = field(default_factory=list)
    link_cost: list[float] = field(default_factory=list)  # the device's measured device-edge link cost, per phase

    def of(self, phase: int, policy: str) -> PhaseStats:
        name = self.phases[phase].name
        return next(s for s in self.stats if s.phase == name and s.policy == policy)


def check_offered(client: Client, image: LabelledImage, policies: Sequence[str]) -> None:
    """One request per policy before the run (it warms the tiers up); a policy the device refuses stops it here."""
    for policy in policies:
        outcome = send(client, image, policy)
        if outcome.tier is None:
            raise SystemExit(f"the device did not answer with policy {policy!r} ({outcome.error}); not running")


def run_link_phases(
    bed: NetnsTestbed,
    images: Sequence[LabelledImage],
    policies: Sequence[str] = POLICIES,
    phases: Sequence[LinkPhase] = PHASES,
) -> LinkPhasesRun:
    """Every phase in turn on ``bed`` (started with a delay on :data:`LINK`); phase k gets the next ``samples`` images.

    ``images`` must hold one more than the phases need: the first warms up the tiers and checks every policy.
    """
    needed = 1 + sum(phase.samples for phase in phases)
    if len(images) < needed:
        raise ValueError(f"the phases need {needed} images, got {len(images)}")
    run = LinkPhasesRun(list(phases), list(policies))
    with Client(bed.device_address, retries=0) as client:
        check_offered(client, images[0], policies)
        start = 1
        for phase in phases:
            bed.shape(LINK, phase.profile)
            bed.set_delay(LINK, phase.delay_ms)
            answers: dict[str, list[Answer]] = {policy: [] for policy in policies}
            for image in images[start : start + phase.samples]:
                for policy in policies:
                    answers[policy].append(send(client, image, policy))
            start += phase.samples
            run.stats += [summarize(phase.name, policy, answers[policy]) for policy in policies]
            run.link_cost.append(client.policy_state(MODEL, COSTS_SHOWN_BY).costs[f"{Tier.DEVICE.value}.link"])
    return run
