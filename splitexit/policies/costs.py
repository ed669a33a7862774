"""The one cost model: what a sample's route costs, in the papers' units, from config or measurement.

Cost of a sample = Σ over tiers (cost of one block on that tier x blocks it
ran) + Σ over links crossed (the offload cost of leaving that tier). With a
per-block cost λ, per-tier weights w and link costs o this is
λ·Σ w_t·blocks_t + o_de + o_ec. The device configures it once
(:class:`CostSettings`, its ``costs:`` settings) and uses the same
:class:`CostModel` for the answers' ``cost`` and ``cost_final_layer``, the
metrics, and its policies' rewards; the offline evaluation builds it from the
same settings. The **final-layer cost** is what a sample costs when it runs
every block down the chain and answers at the final exit (both links
crossed): the reference every cost reduction is measured against.

:class:`MeasuredCosts` refreshes the same numbers online from the hops of real
answers (exponentially weighted means of compute seconds per block on each
tier, and of each link's round trip and bytes), so that a slow link makes
offloading dearer by itself. Pure Python, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from splitexit.policies.chain import Chain, Route, walk
from splitexit.policies.plan import Plan
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import TIERS, Tier


class CostSettings(BaseModel):
    """λ per block, a weight per tier, o per link; and whether to measure them from answers."""

    model_config = ConfigDict(extra="forbid")

    lam: float = Field(0.1, ge=0.0, description="λ: cost of running one block")
    tier_weights: dict[Tier, float] = Field(
        default_factory=lambda: {tier: 1.0 for tier in TIERS},
        description="multiplier on λ per tier; cloud 0 is SplitEE's convention (the cloud's compute is free)",
    )
    o_de: float = Field(0.1, ge=0.0, description="o: cost of sending a sample over the device -> edge link")
    o_ec: float = Field(0.1, ge=0.0, description="o: cost of sending a sample over the edge -> cloud link")
    measured: bool = Field(False, description="refresh block and link costs from the answers' hops (EWMA)")
    per_ms: float = Field(0.1, ge=0.0, description="measured costs: cost of one millisecond")
    per_mb: float = Field(0.0, ge=0.0, description="measured costs: cost of one MB sent on a link")
    smoothing: float = Field(0.05, gt=0.0, le=1.0, description="measured costs: EWMA weight of a new answer")

    def model(self) -> CostModel:
        """A fresh :class:`CostModel` with the configured units."""
        return CostModel.from_units(self.lam, self.tier_weights, self.o_de, self.o_ec)

    def measurement(self, costs: CostModel) -> MeasuredCosts | None:
        """What keeps ``costs`` in step with the answers, if ``measured`` is on."""
        if not self.measured:
            return None
        return MeasuredCosts(
            costs, weights=self.tier_weights, per_ms=self.per_ms, per_mb=self.per_mb, smoothing=self.smoothing
        )


@dataclass
class CostModel:
    """Cost of one block on each tier, and of passing a sample on from each tier.

    Mutable on purpose: :class:`MeasuredCosts` updates it in place, and every
    policy of a model holds the same instance.
    """

    block: dict[Tier, float]
    link: dict[Tier, float]

    @classmethod
    def from_units(cls, lam: float, weights: Mapping[Tier, float], o_de: float, o_ec: float) -> CostModel:
        """λ per block times each tier's weight; o_de and o_ec for the two links."""
        return cls({tier: lam * weights.get(tier, 1.0) for tier in Tier}, {Tier.DEVICE: o_de, Tier.EDGE: o_ec})

    def cost(self, route: Route) -> float:
        """What ``route`` costs: its blocks on each tier plus every link it crossed."""
        total = 0.0
        for run in route.runs:
            total += self.block[run.tier] * run.blocks
        for tier in route.offloaded_from:
            total += self.link[tier]
        return total

    def final_layer(self, chain: Chain) -> float:
        """The final-layer cost: every block run down ``chain``, the final exit answering, both links crossed."""
        return self.cost(walk(Plan("final-layer", (1.0,) * chain.num_blocks), chain, lambda block: 0.0))

    def as_dict(self) -> dict[str, float]:
        """``{"device.block": λ_d, ..., "device.link": o_de, "edge.link": o_ec}``."""
        return {
            **{f"{tier.value}.block": value for tier, value in self.block.items()},
            **{f"{tier.value}.link": value for tier, value in self.link.items()},
        }


class MeasuredCosts:
    """Keeps a :class:`CostModel` in step with what answers report.

    Block cost on tier t = weight_t · per_ms · (mean compute ms per block on t);
    link cost from t = per_ms · (mean network ms of t's hop) + per_mb · (mean MB t
    sent). Means are exponentially weighted with ``smoothing`` (the first
    measurement is taken as is); a tier or link not yet measured keeps its
    configured cost.
    """

    def __init__(
        self, costs: CostModel, *, weights: Mapping[Tier, float], per_ms: float, per_mb: float, smoothing: float
    ) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must lie in (0, 1], got {smoothing}")
        self.costs = costs
        self.weights = dict(weights)
        self.per_ms = per_ms
        self.per_mb = per_mb
        self.smoothing = smoothing
        self.ms_per_block: dict[Tier, float] = {}
        self.link_ms: dict[Tier, float] = {}
        self.link_mb: dict[Tier, float] = {}

    def update(self, answer: pb.InferResponse) -> None:
        """Fold one answer's hops into the means and rewrite the cost model."""
        for hop in answer.hops:
            tier = Tier.from_proto(hop.tier)
            blocks = hop.last_block - hop.first_block + 1
            if blocks > 0:
                self._fold(self.ms_per_block, tier, hop.timings.compute_s * 1e3 / blocks)
                self.costs.block[tier] = self.weights.get(tier, 1.0) * self.per_ms * self.ms_per_block[tier]
            if hop.bytes_sent:
                self._fold(self.link_ms, tier, hop.timings.network_s * 1e3)
                self._fold(self.link_mb, tier, hop.bytes_sent / 1e6)
                self.costs.link[tier] = self.per_ms * self.link_ms[tier] + self.per_mb * self.link_mb[tier]

    def _fold(self, means: dict[Tier, float], tier: Tier, value: float) -> None:
        previous = means.get(tier)
        means[tier] = value if previous is None else previous + self.smoothing * (value - previous)

    def as_dict(self) -> dict[str, float]:
        return {
            **{f"{tier.value}.ms_per_block": value for tier, value in self.ms_per_block.items()},
            **{f"{tier.value}.link_ms": value for tier, value in self.link_ms.items()},
            **{f"{tier.value}.link_mb": value for tier, value in self.link_mb.items()},
        }
