"""The papers' evaluation of the policies on one test stream, by replay (what ``make evaluate`` computes).

Every policy the device offers (but ``thresholds``, which only means "each
tier's own α") and two oracles, the best fixed SplitEE arm and the best fixed
DIMEE arm in hindsight, are replayed over ``seeds`` seeded random orders of the
stream, each time from a fresh state, with the device's hyperparameters and
cost model (a :class:`Setup`). That
is done under two cost conventions that the policies both learn and pay with:
every tier's compute charged, and the cloud's compute free (SplitEE's). Per
policy, averaged over the orders: accuracy, its drop vs the final layer
(points), cost reduction vs the final layer, the share of samples each tier
answered, and the arm it learned (its most pulled one). Also, with the cloud
charged: the split bandits' cumulative regret, and sweeps over o and λ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lab.scenarios import Scenario
from splitexit.policies.baselines import FixedPlan, RandomSplit, baseline_plans
from splitexit.policies.catalog import POLICY_NAMES, PolicyParams, make_policy
from splitexit.policies.chain import Chain
from splitexit.policies.costs import CostModel, CostSettings
from splitexit.policies.dimee import ClusterRouter, cascade_arms
from splitexit.policies.plan import Plan, Policy, TierThresholds
from splitexit.policies.replay import ExitStream, Trace, arm_rewards, best_arm, regret, replay
from splitexit.policies.splitee import BanditPolicy, split_arms
from splitexit.shared.tiers import TIERS, Tier

CONVENTIONS = ("cloud charged", "cloud free")
REGRET_POLICIES = ("splitee", "splitee-s", "i-splitee", "random-split")  # the bandits over split arms
SWEEP_POLICIES = ("splitee", "splitee-s", "dimee")
SWEEPS: dict[str, tuple[float, ...]] = {"o": (0.05, 0.1, 0.2, 0.4, 0.6), "λ": (0.02, 0.05, 0.1, 0.2)}
REGRET_POINTS = 200  # regret curves are kept at this many sample counts


@dataclass(frozen=True)
class PolicyResult:
    """One policy on one scenario, averaged over the stream orders."""

    policy: str
    kind: str  # "learned" (a bandit), "baseline" or "oracle"
    accuracy: float
    accuracy_std: float  # over the orders
    drop_points: float  # final-layer accuracy − accuracy, in points
    cost_reduction: float  # 1 − mean cost / final-layer cost, in the convention it learned with
    tier_share: dict[str, float]  # tier -> share of samples answered there
    learned: str  # the arm it settled on in most orders (or its fixed plan)


@dataclass(frozen=True)
class SweepPoint:
    policy: str
    knob: str  # "o" (o_de = o_ec) or "λ"
    value: float
    accuracy: float
    drop_points: float
    cost_reduction: float  # cloud charged


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    title: str
    samples: int
    phases: list[str]
    final_accuracy: float
    final_cost: dict[str, float]  # convention -> cost of a sample at the final layer
    policies: dict[str, list[PolicyResult]]  # convention -> every policy learning and paying with it
    regret_at: list[int]  # samples seen
    regret: dict[str, list[float]]  # policy -> mean cumulative regret at regret_at
    sweeps: list[SweepPoint]


@dataclass(frozen=True)
class Setup:
    """What the policies are built and priced with: the device's hyperparameters and its cost model."""

    params: PolicyParams
    costs: CostSettings

    def with_costs(self, **update: object) -> Setup:
        return replace(self, costs=self.costs.model_copy(update=update))

    def with_seed(self, offset: int) -> Setup:
        return replace(self, params=self.params.model_copy(update={"seed": self.params.seed + offset}))


def conventions(setup: Setup) -> dict[str, Setup]:
    """``setup`` under each cost convention: every tier's compute charged (the cloud's at its
    configured weight, or 1 if configured free), and the cloud's compute free (SplitEE's)."""
    weights = dict(setup.costs.tier_weights)
    cloud = {"cloud charged": weights.get(Tier.CLOUD, 1.0) or 1.0, "cloud free": 0.0}
    return {name: setup.with_costs(tier_weights={**weights, Tier.CLOUD: cloud[name]}) for name in CONVENTIONS}


def learned_arm(policy: Policy) -> str:
    """The arm a bandit pulled most (per cluster for the router); empty for other policies."""
    if isinstance(policy, RandomSplit):
        return f"uniform over {len(policy.labels)} splits"
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
    """A fixed plan in a few words: ``α = 0.9 at every exit``, ``exit 2``, ``final exit only``."""
    early = {k: a for k, a in enumerate(plan.thresholds or (), start=1) if k < num_blocks and a < 1.0}
    if not early:
        return "final exit only"
    if len(early) == num_blocks - 1 and len(set(early.values())) == 1:
        return f"α = {early[1]:g} at every exit"
    return ", ".join(f"exit {k}" if a == 0.0 else f"α{k} = {a:g}" for k, a in early.items())


def summarize(
    name: str, kind: str, traces: Sequence[Trace], learned: Sequence[str], final_accuracy: float, costs: CostModel,
    final_cost: float,
) -> PolicyResult:  # fmt: skip
    accuracies = np.array([trace.correct.mean() for trace in traces])
    reduction = float(np.mean([1.0 - trace.cost(costs).mean() / final_cost for trace in traces]))
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


def builder(name: str, chain: Chain, plan: Plan | None = None) -> Callable[[Setup], Policy]:
    """Makes policy ``name`` from a setup: a :class:`FixedPlan` of ``plan`` if given, else the device's."""
    if plan is not None:
        return lambda setup: FixedPlan(name, plan)
    return lambda setup: make_policy(name, setup.params, chain, setup.costs.model())


def replays(
    build: Callable[[Setup], Policy], setup: Setup, stream: ExitStream, chain: Chain, seeds: int
) -> tuple[list[Trace], list[str]]:
    """A fresh policy per stream order ``seed`` (its own seed shifted by it); the traces and learned arms."""
    traces, learned = [], []
    for seed in range(seeds):
        policy = build(setup.with_seed(seed))
        traces.append(replay(policy, stream, stream.order(seed), chain))
        learned.append(learned_arm(policy))
    return traces, learned


def sweep(setup: Setup, stream: ExitStream, chain: Chain, seeds: int, final_accuracy: float) -> list[SweepPoint]:
    """The sweep policies under each value of o (both links) and of λ, all else as in ``setup``."""
    points = []
    for knob, values in SWEEPS.items():
        for value in values:
            swept = setup.with_costs(**({"o_de": value, "o_ec": value} if knob == "o" else {"lam": value}))
            costs = swept.costs.model()
            final_cost = costs.final_layer(chain)
            for name in SWEEP_POLICIES:
                traces, learned = replays(builder(name, chain), swept, stream, chain, seeds)
                r = summarize(name, "learned", traces, learned, final_accuracy, costs, final_cost)
                points.append(SweepPoint(name, knob, value, r.accuracy, r.drop_points, r.cost_reduction))
    return points


def evaluate_policies(
    setup: Setup, stream: ExitStream, chain: Chain, seeds: int, final_accuracy: float
) -> tuple[list[PolicyResult], dict[str, np.ndarray]]:
    """Every policy and both oracles, learning and paying with ``setup``; and the split bandits' mean regret."""
    params, costs = setup.params, setup.costs.model()
    final_cost = costs.final_layer(chain)
    split, cascade = split_arms(chain, params.alpha), cascade_arms(chain, params.grid)
    split_rewards = arm_rewards([arm.plan for arm in split], stream, chain, costs, params.mu)
    cascade_rewards = arm_rewards([arm.plan for arm in cascade], stream, chain, costs, params.mu)

    fixed = dict(baseline_plans(chain, params.thresholds))
    oracle_split, oracle_cascade = split[best_arm(split_rewards)], cascade[best_arm(cascade_rewards)]
    fixed["oracle-split"], fixed["oracle-cascade"] = oracle_split.plan, oracle_cascade.plan
    labels = {"oracle-split": oracle_split.label, "oracle-cascade": oracle_cascade.label}

    results, curves = [], {}
    learning = [name for name in POLICY_NAMES if name != TierThresholds.name and name not in fixed]
    for name in [*fixed, *learning]:
        build = builder(name, chain, fixed.get(name))
        traces, learned = replays(build, setup, stream, chain, seeds)
        if name in fixed:
            learned = [labels.get(name, describe_fixed(fixed[name], chain.num_blocks))] * seeds
        kind = "oracle" if name in labels else "learned" if isinstance(build(setup), BanditPolicy) else "baseline"
        results.append(summarize(name, kind, traces, learned, final_accuracy, costs, final_cost))
        if name in REGRET_POLICIES:
            curves[name] = np.mean([regret(trace, split_rewards, stream.phases) for trace in traces], axis=0)
    return results, curves


def evaluate_scenario(
    scenario: Scenario, stream: ExitStream, chain: Chain, setup: Setup, seeds: int, sweeps: bool
) -> ScenarioResult:
    final_accuracy = float((stream.predictions[:, -1] == stream.labels).mean())
    by_convention = conventions(setup)
    results = {name: evaluate_policies(p, stream, chain, seeds, final_accuracy) for name, p in by_convention.items()}
    curves = results[CONVENTIONS[0]][1]
    at = np.unique(np.linspace(1, len(stream), REGRET_POINTS).astype(int))
    return ScenarioResult(
        name=scenario.name,
        title=scenario.title,
        samples=len(stream),
        phases=[phase.name for phase in scenario.phases],
        final_accuracy=final_accuracy,
        final_cost={name: s.costs.model().final_layer(chain) for name, s in by_convention.items()},
        policies={name: policies for name, (policies, _) in results.items()},
        regret_at=at.tolist(),
        regret={name: curve[at - 1].tolist() for name, curve in curves.items()},
        sweeps=sweep(by_convention[CONVENTIONS[0]], stream, chain, seeds, final_accuracy) if sweeps else [],
    )


