"""The papers' reference points: policies that learn nothing.

* ``final-layer`` — every sample runs every block down the chain and answers at
  the final exit (the papers' "all-cloud" reference; costs are reported relative
  to it);
* ``all-device`` / ``all-edge`` — every sample answers at the device's / the
  edge's deepest exit (DIMEE's baselines);
* ``fixed-thresholds`` — the same α at every exit, or one per exit
  (BranchyNet / DeeBERT);
* ``random-split`` — a uniformly random SplitEE arm per sample (seeded);
* the **oracle**, the best fixed arm in hindsight, is a :class:`FixedPlan` too.

Pure Python + numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from splitexit.policies.chain import Chain
from splitexit.policies.plan import Plan
from splitexit.policies.splitee import Arm
from splitexit.shared.tiers import Tier


def final_layer_plan(chain: Chain) -> Plan:
    return Plan("", (1.0,) * chain.num_blocks)


def exit_at_plan(chain: Chain, block: int) -> Plan:
    """Every sample answers at ``block`` (α = 0 there: C > 0 always), none earlier."""
    return Plan("", tuple(0.0 if k == block else 1.0 for k in range(1, chain.num_blocks + 1)))


def fixed_thresholds_plan(chain: Chain, thresholds: Sequence[float]) -> Plan:
    """One α for every exit, or one per exit."""
    values = tuple(thresholds) * chain.num_blocks if len(thresholds) == 1 else tuple(thresholds)
    if len(values) != chain.num_blocks:
        raise ValueError(f"fixed thresholds need 1 or {chain.num_blocks} values, got {len(thresholds)}")
    return Plan("", values)


def baseline_plans(chain: Chain, thresholds: Sequence[float]) -> dict[str, Plan]:
    return {
        "final-layer": final_layer_plan(chain),
        "all-device": exit_at_plan(chain, chain.last_exit(Tier.DEVICE)),
        "all-edge": exit_at_plan(chain, chain.last_exit(Tier.EDGE)),
        "fixed-thresholds": fixed_thresholds_plan(chain, thresholds),
    }


class FixedPlan:
    """Gives every sample the same plan."""

    needs_embedding = False

    def __init__(self, name: str, plan: Plan) -> None:
        self.name = name
        self._plan = replace(plan, policy=name)
        self.samples = 0

    def plan(self, embedding: np.ndarray | None) -> Plan:
        return self._plan

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        self.samples += 1

    def state(self) -> dict[str, Any]:
        return {"policy": self.name, "samples": self.samples, "thresholds": list(self._plan.thresholds or ())}

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.name, "samples": self.samples}

    def load_dict(self, state: Mapping[str, Any]) -> None:
        self.samples = int(state["samples"])


class RandomSplit:
    """A uniformly random arm for every sample, from a seeded generator."""

    needs_embedding = False

    def __init__(self, name: str, arms: Sequence[Arm], seed: int) -> None:
        self.name = name
        self.labels = [arm.label for arm in arms]
        self.plans = [replace(arm.plan, policy=name, arm=(0, i)) for i, arm in enumerate(arms)]
        self.rng = np.random.default_rng(seed)
        self.pulls = [0] * len(arms)
        self.samples = 0

    def plan(self, embedding: np.ndarray | None) -> Plan:
        return self.plans[int(self.rng.integers(len(self.plans)))]

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        assert plan.arm is not None
        self.pulls[plan.arm[1]] += 1
        self.samples += 1

    def state(self) -> dict[str, Any]:
        return {"policy": self.name, "samples": self.samples, "arms": list(self.labels), "pulls": list(self.pulls)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.state(), "rng": self.rng.bit_generator.state}

    def load_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["arms"]) != self.labels:
            raise ValueError(f"saved state of {self.name} has other arms; it starts afresh")
        self.rng.bit_generator.state = state["rng"]
        self.pulls = [int(p) for p in state["pulls"]]
        self.samples = int(state["samples"])
