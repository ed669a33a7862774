"""Replaying one policy over a stream in seeded orders, and what the replays add up to.

A :class:`Setup` is what a policy is built and priced with (the device's
hyperparameters and cost model). :func:`replays` runs a fresh policy per stream
order; :func:`summarize` averages the traces into a :class:`PolicyResult`:
accuracy, drop and cost reduction vs the final layer, the share each tier
answered, the arm it learned and, per phase of the stream, the same numbers
and the regret accumulated in the phase (:class:`PhaseResult`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from splitexit.policies.accuracy import AccuracyBudget
from splitexit.policies.baselines import FixedPlan, RandomSplit
from splitexit.policies.budget import CostBudget
from splitexit.policies.catalog import PolicyParams, make_policy
from splitexit.policies.chain import Chain
from splitexit.policies.costs import CostModel, CostSettings
from splitexit.policies.dimee import ClusterRouter
from splitexit.policies.plan import Plan, Policy
from splitexit.policies.replay import ExitStream, Trace, replay
from splitexit.policies.splitee import BanditPolicy
from splitexit.shared.tiers import TIERS


@dataclass(frozen=True)
class Setup:
    """What the policies are built and priced with: the device's hyperparameters and its cost model."""

    params: PolicyParams
    costs: CostSettings

    def with_costs(self, **update: object) -> Setup:
        return replace(self, costs=self.costs.model_copy(update=update))

    def with_params(self, **update: object) -> Setup:
        return replace(self, params=self.params.model_copy(update=update))

    def with_seed(self, offset: int) -> Setup:
        return self.with_params(seed=self.params.seed + offset)


@dataclass(frozen=True, kw_only=True)
class PhaseResult:
    """One policy over one stationary phase of the stream, averaged over the orders."""

    phase: str
    accuracy: float
    drop_points: float  # the final layer's accuracy in this phase − the policy's, in points
    cost_reduction: float
    regret: float | None  # pseudo-regret accumulated in the phase vs its best fixed arm (None: no arms)
    regret_halves: float | None  # regret in the phase's second half ÷ its first half (< 1: growth slows)


@dataclass(frozen=True, kw_only=True)
class PolicyResult:
    """One policy on one stream, averaged over the stream orders."""

    policy: str
    kind: str  # "learned" (a bandit), "budget" (of cost), "accuracy" (budget), "baseline" or "oracle"
    accuracy: float
    accuracy_std: float  # over the orders
    drop_points: float  # final-layer accuracy − accuracy, in points
    cost_reduction: float  # 1 − mean cost / final-layer cost, in the convention it learned with
    tier_share: dict[str, float]  # tier -> share of samples answered there
    learned: str  # the arm it settled on in most orders (or its fixed plan)
    tuned: str = ""  # the hyperparameters chosen on the validation stream
    frontier_gap: float | None = None  # points of cost a fixed α at ≤ this drop saves beyond it (None: none does)
    phases: list[PhaseResult] = field(default_factory=list)
    shadow_share: float | None = None  # an accuracy budget: the share of samples it ran in the shadow
    validation: tuple[float, float] | None = None  # (drop, cost reduction) of the tuned setting on validation


def learned_arm(policy: Policy) -> str:
    """The arm a bandit pulled most (per cluster for the router), a budget's last α; empty for other policies."""
    if isinstance(policy, RandomSplit):
        return f"uniform over {len(policy.labels)} splits"
    if isinstance(policy, CostBudget | AccuracyBudget):
        return f"α = {policy.alpha:.3f} at the end"
    if not isinstance(policy, BanditPolicy):
        return ""
    groups = policy.state()["groups"]
    if isinstance(policy, ClusterRouter) and policy.centroids is not None:
        groups = groups[1:]  # the clusters, not the calibration cascade
    return "; ".join(
        (f"{g['name']}: " if g["name"] else "") + policy.labels[int(np.argmax(g["pulls"]))]
        for g in groups
        if sum(g["pulls"])
    )


def describe_fixed(plan: Plan, num_blocks: int) -> str:
    """A fixed plan in a few words: ``α = 0.9 at every exit``, ``exit 2``, ``relay after 1``, ``final exit only``."""
    early = {k: a for k, a in enumerate(plan.thresholds or (), start=1) if k < num_blocks and a < 1.0}
    if not early:
        stops = sorted(set(plan.last_block.values()))
        return f"no early exit, sent on after block {stops[0]}" if stops else "final exit only"
    if len(early) == num_blocks - 1 and len(set(early.values())) == 1:
        return f"α = {early[1]:g} at every exit"
    return ", ".join(f"exit {k}" if a == 0.0 else f"α{k} = {a:g}" for k, a in early.items())


def builder(name: str, chain: Chain, plan: Plan | None = None, policy: str = "") -> Callable[[Setup], Policy]:
    """Makes a policy from a setup: a :class:`FixedPlan` of ``plan`` if given, else the device's ``policy`` (or
    ``name``)."""
    if plan is not None:
        return lambda setup: FixedPlan(name, plan)
    return lambda setup: make_policy(policy or name, setup.params, chain, setup.costs.model())


def replays(
    build: Callable[[Setup], Policy], setup: Setup, stream: ExitStream, chain: Chain, seeds: int
) -> tuple[list[Trace], list[Policy]]:
    """A fresh policy per stream order ``seed`` (its own seed shifted by it); the traces and the policies."""
    traces, policies = [], []
    for seed in range(seeds):
        policy = build(setup.with_seed(seed))
        traces.append(replay(policy, stream, stream.order(seed), chain))
        policies.append(policy)
    return traces, policies


def _cost_reduction(
    traces: Sequence[Trace], costs: CostModel, final_cost: float, mask: Callable[[Trace], np.ndarray]
) -> float:
    return float(np.mean([1.0 - trace.cost(costs)[mask(trace)].mean() / final_cost for trace in traces]))


def phase_results(
    traces: Sequence[Trace],
    stream: ExitStream,
    names: Sequence[str],
    costs: CostModel,
    final_cost: float,
    regrets: Sequence[np.ndarray] | None,
) -> list[PhaseResult]:
    """Accuracy, drop, cost reduction and regret in each phase (traces run phase after phase)."""
    results = []
    for p, name in enumerate(names):
        final = float((stream.predictions[stream.phases == p, -1] == stream.labels[stream.phases == p]).mean())
        accuracy = float(np.mean([t.correct[stream.phases[t.order] == p].mean() for t in traces]))
        regret = halves = None
        if regrets is not None:
            where = np.flatnonzero(
                stream.phases[traces[0].order] == p
            )  # positions of the phase, the same in every order
            start, middle, end = where[0], where[len(where) // 2], where[-1]
            per_step = [np.diff(np.concatenate([[0.0], curve])) for curve in regrets]
            regret = float(np.mean([steps[start : end + 1].sum() for steps in per_step]))
            first = np.mean([steps[start:middle].sum() for steps in per_step])
            second = np.mean([steps[middle : end + 1].sum() for steps in per_step])
            halves = float(second / first) if first > 1e-9 else None
        results.append(
            PhaseResult(
                phase=name,
                accuracy=accuracy,
                drop_points=round(100.0 * (final - accuracy), 9) + 0.0,
                cost_reduction=_cost_reduction(traces, costs, final_cost, lambda t: stream.phases[t.order] == p),
                regret=regret,
                regret_halves=halves,
            )
        )
    return results


def summarize(
    name: str,
    kind: str,
    traces: Sequence[Trace],
    learned: Sequence[str],
    final_accuracy: float,
    costs: CostModel,
    final_cost: float,
) -> PolicyResult:
    accuracies = np.array([trace.correct.mean() for trace in traces])
    reduction = _cost_reduction(traces, costs, final_cost, lambda t: slice(None))
    exits = np.concatenate([trace.exit_tier for trace in traces])
    share = {tier.value: float(np.mean(exits == i)) for i, tier in enumerate(TIERS)}
    label, count = Counter(learned).most_common(1)[0]
    return PolicyResult(
        policy=name,
        kind=kind,
        accuracy=float(accuracies.mean()),
        accuracy_std=float(accuracies.std()),
        drop_points=round(100.0 * (final_accuracy - float(accuracies.mean())), 9) + 0.0,  # + 0.0: no "-0.00"
        cost_reduction=round(reduction, 12) + 0.0,
        tier_share=share,
        learned=f"{label} ({count}/{len(learned)} orders)" if label and count < len(learned) else label,
    )
