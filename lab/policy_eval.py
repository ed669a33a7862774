"""The evaluation of the policies on one test stream, by replay (what ``make evaluate`` computes).

Under each cost convention, with the cloud's compute **charged** (the primary
one: every tier's compute counts) and **free** (SplitEE's), the policies both
learn and pay with it. First every hyperparameter is chosen on the scenario's
validation stream (:mod:`lab.tuning`); then, on the test stream, in ``seeds``
seeded random orders, each from a fresh state:

* the baselines that learn nothing: the final layer; the **relays** (every
  sample sent on after block k, no early exit); every sample at the device's /
  the edge's last exit; one α at every exit, chosen on validation;
* the oracles, chosen on the test stream itself (hindsight, with labels where
  said): the best fixed SplitEE arm and DIMEE arm (by mean reward), and the
  cheapest fixed α at every exit within 0.5 and 1 point of drop;
* every learning policy, and a budget per share in :data:`BUDGETS`.

Per policy, averaged over the orders: accuracy, drop (points) and cost
reduction vs the final layer, each tier's share of answers, the arm learned,
the **frontier gap** (how many points of cost the cheapest fixed α at the
same or a lower drop saves beyond it, over :data:`~lab.tuning.FIXED_ALPHAS`
on the test stream) and, per phase, the same numbers and the regret against
the phase's best fixed arm. With the cloud charged also sweeps over o and λ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lab.policy_runs import PolicyResult, Setup, builder, describe_fixed, learned_arm, phase_results, replays, summarize
from lab.scenarios import Scenario
from lab.tuning import FIXED_ALPHAS, Tuned, tune
from splitexit.policies.accuracy import AccuracyBudget
from splitexit.policies.baselines import baseline_plans, fixed_thresholds_plan
from splitexit.policies.budget import CostBudget
from splitexit.policies.catalog import POLICY_NAMES
from splitexit.policies.chain import Chain
from splitexit.policies.dimee import cascade_arms
from splitexit.policies.plan import Plan, Policy, TierThresholds
from splitexit.policies.replay import ExitStream, Trace, arm_rewards, best_arm, regret
from splitexit.policies.splitee import BanditPolicy, split_arms, split_plan
from splitexit.shared.tiers import Tier

CONVENTIONS = ("cloud charged", "cloud free")
BUDGETS = (0.4, 0.5)  # budget rows: at most this share of the final layer's cost
ORACLE_DROPS = (0.5, 1.0)
SWEEP_POLICIES = ("splitee", "splitee-s", "dimee", "cascade")
SWEEPS: dict[str, tuple[float, ...]] = {"o": (0.05, 0.1, 0.2, 0.4, 0.6), "λ": (0.02, 0.05, 0.1, 0.2)}
REGRET_POINTS = 200  # regret curves are kept at this many sample counts
VALIDATION_SEEDS = 2


@dataclass(frozen=True, kw_only=True)
class SweepPoint:
    policy: str
    knob: str  # "o" (o_de = o_ec) or "λ"
    value: float
    accuracy: float
    drop_points: float
    cost_reduction: float  # cloud charged


@dataclass(frozen=True, kw_only=True)
class ScenarioResult:
    name: str
    title: str
    samples: int
    phases: list[str]
    validation: str  # the validation stream's name and size
    final_accuracy: float
    final_cost: dict[str, float]  # convention -> cost of a sample at the final layer
    policies: dict[str, list[PolicyResult]]  # convention -> every policy learning and paying with it
    frontier: dict[str, list[tuple[float, float, float]]]  # convention -> (α, drop, cost reduction) on the test stream
    regret_at: list[int]  # samples seen
    regret: dict[str, list[float]]  # policy -> mean cumulative regret at regret_at (cloud charged)
    sweeps: list[SweepPoint]
    accuracy_points: float  # the accuracy budget's, in points


def conventions(setup: Setup) -> dict[str, Setup]:
    """``setup`` under each cost convention: every tier's compute charged (the cloud's at its
    configured weight, or 1 if configured free), and the cloud's compute free (SplitEE's)."""
    weights = dict(setup.costs.tier_weights)
    cloud = {"cloud charged": weights.get(Tier.CLOUD, 1.0) or 1.0, "cloud free": 0.0}
    return {name: setup.with_costs(tier_weights={**weights, Tier.CLOUD: cloud[name]}) for name in CONVENTIONS}


def fixed_plans(chain: Chain, tuned: dict[str, Tuned]) -> dict[str, Plan]:
    """The baselines that learn nothing: final layer, relays, all-device, all-edge, α chosen on validation."""
    plans = baseline_plans(chain, tuned["fixed-thresholds"].choice["thresholds"])
    relays = {f"relay after {k}": split_plan(chain, k, 1.0) for k in range(1, chain.num_blocks)}
    relays = {name: plan for name, plan in relays.items() if plan.last_block}  # the others are the final layer
    return {"final-layer": plans.pop("final-layer"), **relays, **plans}


def fixed_frontier(
    setup: Setup, stream: ExitStream, chain: Chain, final_accuracy: float
) -> list[tuple[float, float, float]]:
    """(α, drop, cost reduction) of one α at every exit, for every α of the grid, on ``stream`` (hindsight)."""
    costs = setup.costs.model()
    points = []
    for alpha in FIXED_ALPHAS:
        traces, _ = replays(builder("fixed", chain, fixed_thresholds_plan(chain, [alpha])), setup, stream, chain, 1)
        r = summarize("fixed", "", traces, [""], final_accuracy, costs, costs.final_layer(chain))
        points.append((alpha, r.drop_points, r.cost_reduction))
    return points


def frontier_gap(result: PolicyResult, frontier: Sequence[tuple[float, float, float]]) -> float | None:
    """Points of cost the cheapest fixed α with at most ``result``'s drop saves beyond it (< 0: it is beyond)."""
    within = [reduction for _, drop, reduction in frontier if drop <= result.drop_points + 1e-9]
    return round(100.0 * (max(within) - result.cost_reduction), 9) + 0.0 if within else None


def oracle_plans(
    setup: Setup,
    stream: ExitStream,
    chain: Chain,
    tuned: dict[str, Tuned],
    frontier: Sequence[tuple[float, float, float]],
) -> dict[str, tuple[Plan, str]]:
    """The hindsight oracles on the test stream: best SplitEE and DIMEE arm by reward; cheapest fixed α within a
    drop."""
    costs, split_choice, dimee_choice = setup.costs.model(), tuned["splitee"].choice, tuned["dimee"].choice
    oracles = {}
    for name, arms, mu in (
        ("oracle-split", split_arms(chain, split_choice["alpha"]), setup.params.mu),
        ("oracle-cascade", cascade_arms(chain, dimee_choice["grid"]), dimee_choice["mu"]),
    ):
        best = arms[best_arm(arm_rewards([arm.plan for arm in arms], stream, chain, costs, mu))]
        oracles[name] = (best.plan, best.label)
    for limit in ORACLE_DROPS:
        within = [(reduction, alpha) for alpha, drop, reduction in frontier if drop <= limit]
        if within:
            alpha = max(within)[1]
            oracles[f"oracle-fixed ≤ {limit:g} pt"] = (
                fixed_thresholds_plan(chain, [alpha]),
                f"α = {alpha:g} at every exit",
            )
    return oracles


def kind_of(policy: Policy, oracle: bool) -> str:
    """A row's kind: oracle, budget (of cost), accuracy (budget), learned (a bandit) or baseline."""
    if oracle:
        return "oracle"
    if isinstance(policy, CostBudget | AccuracyBudget):
        return "budget" if isinstance(policy, CostBudget) else "accuracy"
    return "learned" if isinstance(policy, BanditPolicy) else "baseline"


def shadow_share(policies: Sequence[Policy]) -> float | None:
    """An accuracy budget's share of samples run in the shadow, over its replays (None for other policies)."""
    budgets = [p for p in policies if isinstance(p, AccuracyBudget)]
    return float(np.mean([p.shadows / p.samples for p in budgets])) if budgets else None


class ArmRewards:
    """Every arm's reward on every sample of a stream, computed once per set of arms and μ."""

    def __init__(self, stream: ExitStream, chain: Chain, setup: Setup) -> None:
        self.stream, self.chain, self.costs = stream, chain, setup.costs.model()
        self._known: dict[tuple[tuple[str, ...], float], np.ndarray] = {}

    def regrets(self, policy: BanditPolicy, traces: Sequence[Trace]) -> list[np.ndarray]:
        """Each order's cumulative regret against the best fixed arm of each phase, over the policy's own arms."""
        key = (tuple(policy.labels), policy.mu)
        if key not in self._known:
            self._known[key] = arm_rewards(policy.plans[0], self.stream, self.chain, self.costs, policy.mu)
        return [regret(trace, self._known[key], self.stream.phases) for trace in traces]


def evaluate_policies(
    setup: Setup,
    tuned: dict[str, Tuned],
    stream: ExitStream,
    chain: Chain,
    seeds: int,
    phases: Sequence[str],
    frontier: Sequence[tuple[float, float, float]],
) -> tuple[list[PolicyResult], dict[str, np.ndarray]]:
    """Every policy, baseline and oracle, learning and paying with ``setup``; and the bandits' mean regret."""
    costs = setup.costs.model()
    final_cost, final_accuracy = costs.final_layer(chain), float((stream.predictions[:, -1] == stream.labels).mean())
    fixed = {name: (plan, describe_fixed(plan, chain.num_blocks)) for name, plan in fixed_plans(chain, tuned).items()}
    oracles = oracle_plans(setup, stream, chain, tuned, frontier)
    learning = [n for n in POLICY_NAMES if n not in fixed and n not in (TierThresholds.name, "budget")]
    budgets = [name for name in tuned if name.startswith("budget")]
    results, curves, rewards = [], {}, ArmRewards(stream, chain, setup)
    for name in [*fixed, *oracles, *learning, *budgets]:
        plan, label = fixed.get(name) or oracles.get(name) or (None, "")
        choice = tuned[name].choice if name in tuned else {}
        build = builder(name, chain, plan, "budget" if name in budgets else "")
        traces, policies = replays(build, setup.with_params(**choice), stream, chain, seeds)
        kind = kind_of(policies[0], name in oracles)
        learned = [label] * seeds if plan is not None else [learned_arm(p) for p in policies]
        result = summarize(name, kind, traces, learned, final_accuracy, costs, final_cost)
        regrets = rewards.regrets(policies[0], traces) if isinstance(policies[0], BanditPolicy) else None
        if regrets is not None:
            curves[name] = np.mean(regrets, axis=0)
        on_validation = tuned[name].validation if name in tuned else None
        results.append(
            replace(
                result,
                tuned=tuned[name].describe() if name in tuned else "",
                frontier_gap=frontier_gap(result, frontier),
                phases=phase_results(traces, stream, phases, costs, final_cost, regrets) if len(phases) > 1 else [],
                shadow_share=shadow_share(policies),
                validation=on_validation and (on_validation.drop_points, on_validation.cost_reduction),
            )
        )
    return results, curves


def sweep(setup: Setup, tuned: dict[str, Tuned], stream: ExitStream, chain: Chain, seeds: int) -> list[SweepPoint]:
    """The sweep policies (as tuned) under each value of o (both links) and of λ, all else as in ``setup``."""
    final_accuracy = float((stream.predictions[:, -1] == stream.labels).mean())
    points = []
    for knob, values in SWEEPS.items():
        for value in values:
            swept = setup.with_costs(**({"o_de": value, "o_ec": value} if knob == "o" else {"lam": value}))
            costs = swept.costs.model()
            for name in SWEEP_POLICIES:
                traces, _ = replays(builder(name, chain), swept.with_params(**tuned[name].choice), stream, chain, seeds)
                r = summarize(name, "learned", traces, [""], final_accuracy, costs, costs.final_layer(chain))
                points.append(
                    SweepPoint(
                        policy=name,
                        knob=knob,
                        value=value,
                        accuracy=r.accuracy,
                        drop_points=r.drop_points,
                        cost_reduction=r.cost_reduction,
                    )
                )
    return points


def evaluate_scenario(
    scenario: Scenario,
    stream: ExitStream,
    validation: tuple[str, ExitStream],
    chain: Chain,
    setup: Setup,
    seeds: int,
    sweeps: bool,
) -> ScenarioResult:
    final_accuracy = float((stream.predictions[:, -1] == stream.labels).mean())
    phases = [phase.name for phase in scenario.phases]
    policies, frontiers, tunings, curves = {}, {}, {}, {}
    for name, convention in conventions(setup).items():
        tunings[name] = tune(convention, validation[1], chain, VALIDATION_SEEDS, BUDGETS)
        frontiers[name] = fixed_frontier(convention, stream, chain, final_accuracy)
        policies[name], curves[name] = evaluate_policies(
            convention, tunings[name], stream, chain, seeds, phases, frontiers[name]
        )
    at = np.unique(np.linspace(1, len(stream), REGRET_POINTS).astype(int))
    charged = conventions(setup)[CONVENTIONS[0]]
    return ScenarioResult(
        name=scenario.name,
        title=scenario.title,
        samples=len(stream),
        phases=phases,
        validation=f"{validation[0]}, {len(validation[1]):,} samples",
        final_accuracy=final_accuracy,
        final_cost={name: s.costs.model().final_layer(chain) for name, s in conventions(setup).items()},
        policies=policies,
        frontier=frontiers,
        regret_at=at.tolist(),
        regret={name: curve[at - 1].tolist() for name, curve in curves[CONVENTIONS[0]].items()},
        sweeps=sweep(charged, tunings[CONVENTIONS[0]], stream, chain, seeds) if sweeps else [],
        accuracy_points=setup.params.accuracy_points,
    )
