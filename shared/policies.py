"""Every policy the device offers, by name, built from one set of hyperparameters.

The same :class:`PolicyParams` configure the live device (``policy:`` in the
device's settings) and the offline replay (``splitexit evaluate``), so both
build identical policies. Pure Python + numpy (pydantic for the parameters),
no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from shared.bandits import BanditPolicy, split_arms
from shared.baselines import FixedPlan, RandomSplit, baseline_plans
from shared.chain import TIERS, Chain
from shared.costs import CostModel
from shared.dimee import ClusterRouter, cascade_arms
from shared.manifest import BlockRange, Manifest, Tier
from shared.policy import Policy, TierThresholds


class PolicyParams(BaseModel):
    """Hyperparameters and the cost model of the device's policies (symbols as in the papers)."""

    model_config = ConfigDict(extra="forbid")

    lam: float = Field(0.1, ge=0.0, description="λ: cost of one block")
    tier_weights: dict[Tier, float] = Field(
        default_factory=lambda: {Tier.DEVICE: 1.0, Tier.EDGE: 1.0, Tier.CLOUD: 1.0},
        description="multiplier on λ per tier; cloud 0 is SplitEE's convention (cloud compute free)",
    )
    o_de: float = Field(0.1, ge=0.0, description="offload cost of the device -> edge link")
    o_ec: float = Field(0.1, ge=0.0, description="offload cost of the edge -> cloud link")
    mu: float = Field(1.0, ge=0.0, description="μ: weight of cost against confidence in the reward")
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="SplitEE's α at the split exit")
    ucb_c: float = Field(1.0, ge=0.0, description="UCB exploration constant c")
    discount: float = Field(0.998, gt=0.0, le=1.0, description="I-SplitEE's discount γ per sample")
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
    hosted: dict[str, dict[Tier, BlockRange]] = Field(
        default_factory=dict, description="per model, the ranges the tiers host, if not the manifest's defaults"
    )
    measured_costs: bool = Field(False, description="refresh block and link costs from answers' hops (EWMA)")
    cost_per_ms: float = Field(0.1, ge=0.0, description="measured costs: cost of one millisecond")
    cost_per_mb: float = Field(0.0, ge=0.0, description="measured costs: cost of one MB sent on a link")
    smoothing: float = Field(0.05, gt=0.0, le=1.0, description="measured costs: EWMA weight of a new answer")

    def chain(self, manifest: Manifest, device: BlockRange | None = None) -> Chain:
        """The model's chain: configured ranges, else the manifest's defaults (``device``: what the device hosts)."""
        hosted = {tier: self.hosted.get(manifest.name, {}).get(tier, manifest.default_ranges[tier]) for tier in TIERS}
        if device is not None:
            hosted[Tier.DEVICE] = device
        return Chain(manifest.num_blocks, hosted)

    def costs(self) -> CostModel:
        return CostModel.from_units(self.lam, self.tier_weights, self.o_de, self.o_ec)


@runtime_checkable
class LearningPolicy(Policy, Protocol):
    """A policy with state to show and to keep across restarts."""

    samples: int  # samples observed

    def state(self) -> dict[str, Any]: ...

    def to_dict(self) -> dict[str, Any]: ...

    def load_dict(self, state: Mapping[str, Any]) -> None: ...


def _bandit(name: str, p: PolicyParams, chain: Chain, costs: CostModel, **options: Any) -> BanditPolicy:
    return BanditPolicy(name, split_arms(chain, p.alpha), chain, costs, mu=p.mu, c=p.ucb_c, **options)


def _router(name: str, p: PolicyParams, chain: Chain, costs: CostModel) -> ClusterRouter:
    arms = cascade_arms(chain, p.grid)
    return ClusterRouter(
        name, arms, chain, costs, clusters=p.clusters, calibration=p.calibration, seed=p.seed, mu=p.mu, c=p.ucb_c
    )


Builder = Callable[[str, PolicyParams, Chain, CostModel], Policy]


def _fixed(baseline: str) -> Builder:
    return lambda name, p, chain, costs: FixedPlan(name, baseline_plans(chain, p.thresholds)[baseline])


BUILDERS: dict[str, Builder] = {
    TierThresholds.name: lambda name, p, chain, costs: TierThresholds(),
    **{baseline: _fixed(baseline) for baseline in ("final-layer", "all-device", "all-edge", "fixed-thresholds")},
    "random-split": lambda name, p, chain, costs: RandomSplit(name, split_arms(chain, p.alpha), p.seed),
    "splitee": lambda name, p, chain, costs: _bandit(name, p, chain, costs),
    "splitee-s": lambda name, p, chain, costs: _bandit(name, p, chain, costs, side_observations=True),
    "i-splitee": lambda name, p, chain, costs: _bandit(name, p, chain, costs, discount=p.discount),
    "dimee": lambda name, p, chain, costs: BanditPolicy(
        name, cascade_arms(chain, p.grid), chain, costs, mu=p.mu, c=p.ucb_c
    ),
    "dimee-router": _router,
}
POLICY_NAMES = tuple(BUILDERS)


def make_policy(name: str, params: PolicyParams, chain: Chain, costs: CostModel) -> Policy:
    """A fresh policy ``name``; its costs are ``costs`` (shared, possibly measured, instance)."""
    try:
        build = BUILDERS[name]
    except KeyError:
        raise ValueError(f"no policy named {name!r}; choose from {', '.join(POLICY_NAMES)}") from None
    return build(name, params, chain, costs)
