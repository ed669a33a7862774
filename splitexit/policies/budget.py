"""A budget users can state: "at most this share of the final layer's cost per sample", kept online.

Users cannot reason about μ, λ and o; they can say what a sample may cost.
:class:`CostBudget` gives every sample one threshold α at every exit
(BranchyNet's rule, so it moves along the fixed-threshold frontier) and moves
it after every answer by a dual-ascent step on the budget constraint
E[cost] ≤ B, where B = ``share`` × the final layer's cost:

    ν ← ν − η · (cost_t − B) / final-layer cost,   α = clip(ν, 0, 1)

A sample that cost more than the budget lowers α (more samples exit early), a
cheaper one raises it. Summed over the stream the steps telescope:
Σ_t (cost_t − B) = final-layer cost · (ν_0 − ν_T) / η, so the mean cost
exceeds B by final-layer cost · (ν_0 − ν_T) / (η·T). ν leaves [0, 1] by at
most one step while the budget can be met (α = 1 costs more than B, α = 0
less), and is held within [−1, 2] when it cannot; starting from the α that
met the budget on a validation stream keeps ν_0 − ν_T small.
The cost of a sample is known without labels (its route), so the budget
holds whatever the inputs do; what it costs in accuracy depends on them.

A request may state its own budget by naming the policy ``budget@<share>``
(``budget@0.3``: at most 30 % of the final layer's cost); the device keeps one
such policy per share (:func:`budget_share`).

Pure Python, no I/O; state goes to and from plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from splitexit.policies.chain import Chain, route_taken
from splitexit.policies.costs import CostModel
from splitexit.policies.plan import Plan

BUDGET_PREFIX = "budget@"


def stated_number(name: str, prefix: str, upper: float, usage: str) -> float:
    """The number in (0, ``upper``] a ``<prefix><number>`` policy name states; else ValueError saying ``usage``."""
    try:
        value = float(name.removeprefix(prefix))
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= upper:  # also false for NaN
        raise ValueError(f"{name!r} {usage}")
    return value


def budget_share(name: str) -> float:
    """The share a ``budget@<share>`` policy name states; ValueError with a readable message if it is none."""
    return stated_number(
        name,
        BUDGET_PREFIX,
        1.0,
        "states no budget: write budget@<share>, the share of the final layer's cost a "
        "sample may cost on average, in (0, 1], e.g. budget@0.4",
    )


class CostBudget:
    """One α at every exit, moved after each answer so the mean cost stays within the budget."""

    needs_embedding = False

    def __init__(self, name: str, chain: Chain, costs: CostModel, *, share: float, step: float, alpha: float) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"the budget is a share of the final layer's cost in (0, 1], got {share}")
        if step <= 0.0:
            raise ValueError(f"the budget's step η must be positive, got {step}")
        self.name = name
        self.chain = chain
        self.costs = costs
        self.share = share
        self.step = step
        self.level = float(np.clip(alpha, 0.0, 1.0))  # ν, the dual variable; α = clip(ν, 0, 1)
        self.samples = 0
        self.spent = 0.0  # Σ cost of the samples observed
        self.allowed = 0.0  # Σ budget over the same samples (the final-layer cost may be measured, so it moves)
        self._plan = self._make_plan()

    @property
    def alpha(self) -> float:
        return min(max(self.level, 0.0), 1.0)

    def _make_plan(self) -> Plan:
        return Plan(self.name, (self.alpha,) * self.chain.num_blocks, arm=(0, 0))

    def budget(self) -> float:
        """B: the cost per sample the budget allows, now."""
        return self.share * self.costs.final_layer(self.chain)

    def plan(self, embedding: np.ndarray | None) -> Plan:
        return self._plan

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        if plan.policy != self.name:
            raise ValueError(f"{self.name} cannot learn from a plan it did not make ({plan.policy!r})")
        cost = self.costs.cost(route_taken(plan, self.chain, confidences))
        final, budget = self.costs.final_layer(self.chain), self.budget()
        self.spent += cost
        self.allowed += budget
        self.samples += 1
        before = self.alpha
        self.level = min(max(self.level - self.step * (cost - budget) / final, -1.0), 2.0)
        if self.alpha != before:
            self._plan = self._make_plan()

    def state(self) -> dict[str, Any]:
        mean = self.spent / self.samples if self.samples else 0.0
        return {
            "policy": self.name,
            "samples": self.samples,
            "thresholds": list(self._plan.thresholds or ()),
            "budget_share": self.share,
            "budget_cost": self.budget(),
            "mean_cost": mean,
            "costs": self.costs.as_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "samples": self.samples,
            "level": self.level,
            "spent": self.spent,
            "allowed": self.allowed,
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        if state["policy"] != self.name:
            raise ValueError(f"saved state is for {state['policy']!r}; {self.name} starts afresh")
        self.samples, self.level = int(state["samples"]), float(state["level"])
        self.spent, self.allowed = float(state["spent"]), float(state["allowed"])
        self._plan = self._make_plan()
