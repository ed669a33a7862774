"""Every policy the device offers, by name, built from one set of hyperparameters.

The same :class:`PolicyParams` configure the live device (``policy:`` in the
device's settings) and the offline replay (``make evaluate``), so both build
identical policies; both take the chain and the cost model from the one place
each is configured (:meth:`~splitexit.policies.chain.Chain.of`,
:class:`~splitexit.policies.costs.CostSettings`). Pure Python + numpy (pydantic
for the parameters), no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from splitexit.policies.accuracy import AccuracyBudget
from splitexit.policies.baselines import FixedPlan, RandomSplit, baseline_plans
from splitexit.policies.budget import CostBudget
from splitexit.policies.cascade import eager_credits, tier_threshold_arms
from splitexit.policies.chain import Chain
from splitexit.policies.costs import CostModel
from splitexit.policies.dimee import ClusterRouter, cascade_arms
from splitexit.policies.drift import PageHinkley
from splitexit.policies.plan import Policy, TierThresholds
from splitexit.policies.splitee import BanditPolicy, DeviceSideCosts, i_splitee_arms, split_arms


class PolicyParams(BaseModel):
    """Hyperparameters of the device's policies (symbols as in the papers; costs are
    :class:`~splitexit.policies.costs.CostSettings`)."""

    model_config = ConfigDict(extra="forbid")

    mu: float = Field(1.0, ge=0.0, description="μ: weight of cost against confidence in the reward")
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="SplitEE's α at the split exit")
    ucb_c: float = Field(1.0, ge=0.0, description="UCB exploration constant c")
    discount: float = Field(0.998, gt=0.0, le=1.0, description="splitee-d: the discount γ per sample")
    window: int = Field(
        300, ge=1, description="the sliding-window policies (splitee-sw, dimee-sw): rounds each arm's mean covers"
    )
    drift_delta: float = Field(
        0.005, ge=0.0, description="the -cd policies' Page-Hinkley test on C_1: drift δ tolerated"
    )
    drift_threshold: float = Field(
        10.0, gt=0.0, description="the -cd policies' Page-Hinkley test: cumulative deviation h that signals a change"
    )
    cascade_grid: list[float] = Field(
        default_factory=lambda: [0.8, 0.9, 0.95, 0.99, 1.0],
        description="cascade: candidate α_d for the device's exits and α_o for every later one (1: never exit there)",
    )
    budget_share: float = Field(
        0.4, gt=0.0, le=1.0, description="budget: at most this share of the final layer's cost per sample, on average"
    )
    budget_step: float = Field(0.05, gt=0.0, description="budget: step η of α per sample, per final-layer cost over")
    budget_alpha: float = Field(0.9, ge=0.0, le=1.0, description="budget: the α it starts from")
    accuracy_points: float = Field(
        0.5, gt=0.0, le=100.0, description="accuracy-budget: at most this many accuracy points below the final layer"
    )
    accuracy_alphas: list[float] = Field(
        default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999],
        description="accuracy-budget: the α it may play at every exit (1, no early exit, is always one)",
    )
    shadow_share: float = Field(0.03, ge=0.0, le=1.0, description="accuracy-budget: share of samples run in the shadow")
    shadow_burst_share: float = Field(
        0.2, ge=0.0, le=1.0, description="accuracy-budget: the shadow share at the start and after a change"
    )
    shadow_burst: int = Field(300, ge=0, description="accuracy-budget: samples at the burst share after a change")
    shadow_memory: float = Field(400.0, ge=1.0, description="accuracy-budget: shadow runs its estimates remember")
    shadow_prior: float = Field(
        5.0, gt=0.0, description="accuracy-budget: weight n₀, in shadow runs, of the prior D(α) ≤ 1 − α"
    )
    grid: list[float] = Field(
        default_factory=lambda: [0.7, 0.8, 0.9, 1.0],
        description="DIMEE's candidate α_d and α_e (1: never exit there); every pair is an arm, so the grid is kept "
        "coarse: UCB's exploration grows with the number of arms, and 16 settle within a thousand samples",
    )
    clusters: int = Field(3, ge=1, description="DIMEE router: k-means clusters")
    calibration: int = Field(200, ge=1, description="DIMEE router: samples before the clusters are fitted")
    thresholds: list[float] = Field(
        default_factory=lambda: [0.9], description="fixed-thresholds baseline: one α, or one per exit"
    )
    seed: int = Field(0, description="random-split and k-means seed")


@runtime_checkable
class LearningPolicy(Policy, Protocol):
    """A policy with state to show and to keep across restarts."""

    samples: int  # samples observed

    def state(self) -> dict[str, Any]: ...

    def to_dict(self) -> dict[str, Any]: ...

    def load_dict(self, state: Mapping[str, Any]) -> None: ...


def _bandit(name: str, p: PolicyParams, chain: Chain, costs: CostModel, **options: Any) -> BanditPolicy:
    return BanditPolicy(name, split_arms(chain, p.alpha), chain, costs=costs, mu=p.mu, c=p.ucb_c, **options)


def _detector(p: PolicyParams) -> PageHinkley:
    return PageHinkley(p.drift_delta, p.drift_threshold)


def _router(name: str, p: PolicyParams, chain: Chain, costs: CostModel) -> ClusterRouter:
    arms = cascade_arms(chain, p.grid)
    return ClusterRouter(
        name, arms, chain, costs=costs, clusters=p.clusters, calibration=p.calibration, seed=p.seed, mu=p.mu, c=p.ucb_c
    )


def _cascade(name: str, p: PolicyParams, chain: Chain, costs: CostModel) -> BanditPolicy:
    arms = tier_threshold_arms(chain, p.cascade_grid)
    return BanditPolicy(
        name, arms, chain, costs=costs, mu=p.mu, c=p.ucb_c, detector=_detector(p), credits=eager_credits(arms)
    )


Builder = Callable[[str, PolicyParams, Chain, CostModel], Policy]


def _fixed(baseline: str) -> Builder:
    return lambda name, p, chain, costs: FixedPlan(name, baseline_plans(chain, p.thresholds)[baseline])


def accuracy_budget(name: str, p: PolicyParams, chain: Chain, points: float | None = None) -> AccuracyBudget:
    """The accuracy budget ``points`` (None: ``p.accuracy_points``) with ``p``'s shadow settings."""
    return AccuracyBudget(
        name,
        chain,
        points=p.accuracy_points if points is None else points,
        alphas=p.accuracy_alphas,
        share=p.shadow_share,
        burst_share=p.shadow_burst_share,
        burst=p.shadow_burst,
        memory=p.shadow_memory,
        prior=p.shadow_prior,
        detector=_detector(p),
    )


BUILDERS: dict[str, Builder] = {
    TierThresholds.name: lambda name, p, chain, costs: TierThresholds(),
    **{baseline: _fixed(baseline) for baseline in ("final-layer", "all-device", "all-edge", "fixed-thresholds")},
    "random-split": lambda name, p, chain, costs: RandomSplit(name, split_arms(chain, p.alpha), p.seed),
    "splitee": lambda name, p, chain, costs: _bandit(name, p, chain, costs),
    "splitee-s": lambda name, p, chain, costs: _bandit(name, p, chain, costs, side_observations=True),
    "i-splitee": lambda name, p, chain, costs: BanditPolicy(
        name,
        i_splitee_arms(chain, p.alpha),
        chain,
        costs=DeviceSideCosts.of(costs),
        mu=p.mu,
        c=p.ucb_c,
        side_observations=True,
    ),
    "splitee-d": lambda name, p, chain, costs: _bandit(name, p, chain, costs, discount=p.discount),
    "splitee-sw": lambda name, p, chain, costs: _bandit(name, p, chain, costs, window=p.window),
    "splitee-cd": lambda name, p, chain, costs: _bandit(name, p, chain, costs, detector=_detector(p)),
    "dimee": lambda name, p, chain, costs: BanditPolicy(
        name, cascade_arms(chain, p.grid), chain, costs=costs, mu=p.mu, c=p.ucb_c
    ),
    "dimee-sw": lambda name, p, chain, costs: BanditPolicy(
        name, cascade_arms(chain, p.grid), chain, costs=costs, mu=p.mu, c=p.ucb_c, window=p.window
    ),
    "dimee-router": _router,
    "cascade": lambda name, p, chain, costs: _cascade(name, p, chain, costs),
    "budget": lambda name, p, chain, costs: CostBudget(
        name, chain, costs, share=p.budget_share, step=p.budget_step, alpha=p.budget_alpha
    ),
    "accuracy-budget": lambda name, p, chain, costs: accuracy_budget(name, p, chain),
}
POLICY_NAMES = tuple(BUILDERS)


def make_policy(name: str, params: PolicyParams, chain: Chain, costs: CostModel) -> Policy:
    """A fresh policy ``name``; its costs are ``costs`` (shared, possibly measured, instance)."""
    try:
        build = BUILDERS[name]
    except KeyError:
        raise ValueError(f"no policy named {name!r}; choose from {', '.join(POLICY_NAMES)}") from None
    return build(name, params, chain, costs)
