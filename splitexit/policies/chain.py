"""Where a plan sends a sample through the device -> edge -> cloud chain, without running it.

The tiers execute a :class:`~splitexit.policies.plan.Plan` block by block (see
:meth:`splitexit.shared.runtime.HostedModel.run` and :meth:`splitexit.shared.node.TierNode.process`).
:func:`walk` follows exactly the same rules on known confidences instead of a
network, so a policy can tell what a plan did (or would have done) to a sample,
and a replay can stand in for the tiers:

* every tier resumes at the block after the last one run, starting at block 1;
* after each block it runs, a tier exits if :func:`~splitexit.policies.plan.exits_at`
  says so (C_k > α_k, or the final block);
* a tier passes the sample on at the plan's stop point for it, or at the end of
  its hosted range; a stop point before the resume block relays the sample
  without running a block; every pass crosses one link.

Pure Python, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from splitexit.policies.plan import Plan, exits_at
from splitexit.shared.errors import OutOfRange
from splitexit.shared.manifest import BlockRange, Manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import TIERS, Tier


class Unobserved(LookupError):
    """A walk needed the confidence of an exit the sample never ran."""


@dataclass(frozen=True)
class Chain:
    """One model's blocks and the range each tier hosts, in the order a sample travels."""

    num_blocks: int
    hosted: Mapping[Tier, BlockRange]

    @classmethod
    def of(cls, manifest: Manifest, overrides: Mapping[Tier, BlockRange] | None = None) -> Chain:
        """The deployment's chain for a model: each tier's range from ``overrides``, else the manifest's default."""
        overrides = overrides or {}
        return cls(manifest.num_blocks, {tier: overrides.get(tier, manifest.default_ranges[tier]) for tier in TIERS})

    def __post_init__(self) -> None:
        for tier, hosted in self.hosted.items():
            if hosted.last > self.num_blocks:
                raise ValueError(f"the {tier.value} cannot host {hosted}: the model has {self.num_blocks} blocks")
        if self.hosted[Tier.DEVICE].first != 1:
            raise ValueError(f"the device must host block 1, not start at {self.hosted[Tier.DEVICE]}")
        if self.hosted[Tier.CLOUD].last != self.num_blocks:
            raise ValueError(
                f"the cloud must host the final block {self.num_blocks}, not end at {self.hosted[Tier.CLOUD]}"
            )

    def last_exit(self, tier: Tier) -> int:
        """The deepest exit ``tier`` hosts (m for the device, e for the edge, L for the cloud)."""
        return self.hosted[tier].last

    def resumes(self, tier: Tier, block: int) -> bool:
        """Whether ``tier`` can resume a sample at ``block``."""
        return block in self.hosted[tier]


@dataclass(frozen=True)
class TierRun:
    """The blocks one tier ran for a sample (none if ``last < first``: it relayed)."""

    tier: Tier
    first: int
    last: int

    @property
    def blocks(self) -> int:
        return max(self.last - self.first + 1, 0)


@dataclass(frozen=True)
class Route:
    """A sample's way through the chain: one run per tier it reached; the last one answered."""

    runs: tuple[TierRun, ...]
    exit_block: int

    @property
    def exit_tier(self) -> Tier:
        return self.runs[-1].tier

    @property
    def offloaded_from(self) -> tuple[Tier, ...]:
        """The tiers that passed the sample on: each crossed its link to the next tier."""
        return tuple(run.tier for run in self.runs[:-1])


def walk(
    plan: Plan,
    chain: Chain,
    confidence: Callable[[int], float],
    default_thresholds: Sequence[float] | None = None,
) -> Route:
    """The route ``plan`` gives a sample whose exit k shows ``confidence(k)``.

    ``default_thresholds`` stand in for the tiers' own α when the plan sets none.
    ``confidence`` may raise :class:`Unobserved`; the walk asks only for the
    exits the sample runs, in order.
    """
    thresholds = plan.thresholds or default_thresholds
    if thresholds is None:
        raise ValueError(f"plan {plan.policy!r} sets no thresholds and no tier defaults were given")
    runs: list[TierRun] = []
    block = 1
    for tier in TIERS:
        hosted = chain.hosted[tier]
        if block not in hosted:
            raise OutOfRange(f"the {tier.value} hosts blocks {hosted}; it cannot resume at block {block}")
        stop = plan.stop_block(tier, hosted)
        for k in range(block, stop + 1):
            if exits_at(k, confidence(k), thresholds, chain.num_blocks):
                runs.append(TierRun(tier, block, k))
                return Route(tuple(runs), k)
        runs.append(TierRun(tier, block, stop))
        block = max(block, stop + 1)
    raise AssertionError("the cloud hosts the final block, which always answers")


def observed(confidences: Mapping[int, float]) -> Callable[[int], float]:
    """A ``confidence`` lookup for :func:`walk` over what a sample really showed."""

    def lookup(block: int) -> float:
        try:
            return confidences[block]
        except KeyError:
            raise Unobserved(block) from None

    return lookup


def route_taken(plan: Plan, chain: Chain, confidences: Mapping[int, float]) -> Route:
    """The route a sample took under ``plan``, from the exits it ran (it answered at the deepest).

    Decided from where the sample really stopped, not by comparing the reported
    (float32) confidences with the thresholds again, so it is exact.
    """
    exit_block = max(confidences)
    forced = replace(plan, thresholds=(0.0,) * chain.num_blocks)  # C > 0 always; 0 > 0 never
    route = walk(forced, chain, lambda block: 1.0 if block == exit_block else 0.0)
    if route.exit_block != exit_block:
        raise ValueError(f"plan {plan.policy!r} cannot answer at block {exit_block} on this chain")
    return route


def observed_confidences(answer: pb.InferResponse) -> dict[int, float]:
    """Every exit a sample ran, across all tiers, from its answer: block -> C_k."""
    return {hop.first_block + i: confidence for hop in answer.hops for i, confidence in enumerate(hop.exit_confidences)}


def observed_labels(answer: pb.InferResponse) -> dict[int, int]:
    """The label every exit a sample ran predicted, across all tiers, from its answer: block -> label."""
    return {hop.first_block + i: label for hop in answer.hops for i, label in enumerate(hop.exit_labels)}


def answer_route(answer: pb.InferResponse) -> Route:
    """The route an answer's hops record (each hop: a tier and the blocks it ran)."""
    runs = tuple(TierRun(Tier.from_proto(hop.tier), hop.first_block, hop.last_block) for hop in answer.hops)
    return Route(runs, answer.exit_block)
