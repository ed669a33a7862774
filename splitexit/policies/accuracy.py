"""A budget on accuracy users can state: "lose at most this many points against the final layer", kept without labels.

No label says when an early answer is wrong, but the final layer's answer is
the reference the drop is measured against, and it can be had: a **shadow
run** sends a sample all the way to the final exit (its plan: no early exit,
:attr:`~splitexit.policies.plan.Plan.shadow`), and since the tiers record the
label every exit predicted (``Hop.exit_labels``), it reveals for every α at
once whether the early answer that α would have given agrees with the final
one (in the manner of Apparate, SOSP '24). The sample is answered by the final
exit, and its whole route is charged in the cost.

:class:`AccuracyBudget` gives every other sample one α at every exit and keeps,
per α of a grid, the shadow runs seen and the disagreements among them, with
exponential forgetting (``memory`` shadow runs). It estimates the
disagreement D(α) = P(early answer under α ≠ final answer) as

    D̂(α) = (d_α + n₀ · (1 − α)) / (n_α + n₀)

(the prior: an exit at C > α disagrees at most 1 − α of the time, worth n₀
shadow runs) and plays the lowest α with D̂(α) ≤ budget. The drop against the
final layer is at most the disagreement, so keeping D within the budget keeps
the drop within it. Which sample runs in the shadow never depends on the
sample: a share ``s`` is spread evenly over the stream (a sample is a shadow
run when the running sum of shares passes a whole number), ``burst_share``
for the first ``burst`` samples and after a change, ``share`` otherwise. A
Page-Hinkley test on C_1 (:mod:`~splitexit.policies.drift`) flags a change of
the inputs; then the counts start afresh (α goes back to the prior's) and the
share rises until the new inputs are measured.

A request may state its own budget by naming the policy ``accuracy@<points>``
(``accuracy@0.5``: at most 0.5 points below the final layer); the device keeps
one such policy per budget. Pure Python + numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from splitexit.policies.budget import stated_number
from splitexit.policies.chain import Chain
from splitexit.policies.drift import PageHinkley
from splitexit.policies.plan import Plan

ACCURACY_PREFIX = "accuracy@"


def accuracy_points(name: str) -> float:
    """The points an ``accuracy@<points>`` policy name states; ValueError with a readable message if it is none."""
    return stated_number(
        name,
        ACCURACY_PREFIX,
        100.0,
        "states no accuracy budget: write accuracy@<points>, the accuracy points "
        "below the final layer's an answer may lose on average, in (0, 100], e.g. accuracy@0.5",
    )


def disagreements(alphas: np.ndarray, confidences: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """Per α: whether the early answer one α at every exit gives differs from the final exit's (C_1..C_L, labels)."""
    early = np.asarray(confidences[:-1])[None, :] > alphas[:, None]  # [α, exits before L]
    exit_index = np.where(early.any(axis=1), early.argmax(axis=1), len(confidences) - 1)
    differs: np.ndarray = np.asarray(labels)[exit_index] != labels[-1]
    return differs


class AccuracyBudget:
    """One α at every exit, the lowest whose estimated disagreement with the final layer is within the budget."""

    needs_embedding = False
    FIELDS = ("samples", "shadows", "credit", "burst_left", "choice")

    def __init__(
        self,
        name: str,
        chain: Chain,
        *,
        points: float,
        alphas: Sequence[float],
        share: float,
        burst_share: float,
        burst: int,
        memory: float,
        prior: float,
        detector: PageHinkley,
    ) -> None:
        if not 0.0 < points <= 100.0:
            raise ValueError(f"the accuracy budget is in points in (0, 100], got {points}")
        if not 0.0 <= share <= burst_share <= 1.0:
            raise ValueError(f"shadow shares need 0 ≤ share ≤ burst share ≤ 1, got {share} and {burst_share}")
        self.name = name
        self.chain = chain
        self.points = points
        self.alphas = np.array(sorted({*alphas, 1.0}))  # α = 1 (no early exit) never disagrees: always within
        self.share, self.burst_share, self.burst = share, burst_share, burst
        self.decay = 1.0 - 1.0 / memory
        self.prior = prior
        self.detector = detector
        self.runs = np.zeros(len(self.alphas))  # n_α: shadow runs, forgetting
        self.disagreed = np.zeros(len(self.alphas))  # d_α
        self.samples = self.shadows = 0
        self.credit = 0.0  # the running sum of shadow shares, less the shadow runs given
        self.burst_left = burst
        self.plans = [Plan(name, (float(a),) * chain.num_blocks, arm=(0, i)) for i, a in enumerate(self.alphas)]
        self.shadow_plan = Plan(name, (1.0,) * chain.num_blocks, arm=(0, len(self.alphas)), shadow=True)
        self.choice = self._choose()

    @property
    def alpha(self) -> float:
        return float(self.alphas[self.choice])

    def estimates(self) -> np.ndarray:
        """D̂(α) for every α of the grid."""
        return (self.disagreed + self.prior * (1.0 - self.alphas)) / (self.runs + self.prior)

    def _choose(self) -> int:
        return int(np.flatnonzero(self.estimates() <= self.points / 100.0 + 1e-12)[0])

    def plan(self, embedding: np.ndarray | None) -> Plan:
        self.credit += self.burst_share if self.burst_left > 0 else self.share
        self.burst_left = max(self.burst_left - 1, 0)
        if self.credit >= 1.0:
            self.credit -= 1.0
            return self.shadow_plan
        return self.plans[self.choice]

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        if plan.policy != self.name:
            raise ValueError(f"{self.name} cannot learn from a plan it did not make ({plan.policy!r})")
        self.samples += 1
        if self.detector.update(confidences[1]):
            self.runs[:] = 0.0
            self.disagreed[:] = 0.0
            self.burst_left = self.burst
            self.choice = self._choose()

    def observe_shadow(self, plan: Plan, confidences: Mapping[int, float], labels: Mapping[int, int]) -> None:
        """A shadow run: every exit's C_k and label, so every α's early answer is compared with the final one."""
        self.observe(plan, confidences)
        blocks = range(1, self.chain.num_blocks + 1)
        differ = disagreements(self.alphas, [confidences[k] for k in blocks], [labels[k] for k in blocks])
        self.runs = self.runs * self.decay + 1.0
        self.disagreed = self.disagreed * self.decay + differ
        self.shadows += 1
        self.choice = self._choose()

    def state(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "samples": self.samples,
            "thresholds": list(self.plans[self.choice].thresholds or ()),
            "budget_points": self.points,
            "shadow_runs": self.shadows,
            "shadow_share": self.shadows / self.samples if self.samples else 0.0,
            "estimated_disagreement": {
                f"{a:g}": e for a, e in zip(self.alphas, self.estimates().tolist(), strict=True)
            },
            "changes": self.detector.changes,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "alphas": self.alphas.tolist(),
            "runs": self.runs.tolist(),
            "disagreed": self.disagreed.tolist(),
            **{name: getattr(self, name) for name in self.FIELDS},
            "detector": self.detector.to_dict(),
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        if state["policy"] != self.name or state["alphas"] != self.alphas.tolist():
            raise ValueError(f"saved state is for {state['policy']!r} with another grid; {self.name} starts afresh")
        self.runs, self.disagreed = np.array(state["runs"], dtype=float), np.array(state["disagreed"], dtype=float)
        for name in self.FIELDS:
            setattr(self, name, type(getattr(self, name))(state[name]))
        self.detector.load_dict(state["detector"])
