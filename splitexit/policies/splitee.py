"""Bandit policies that learn, without labels, which plan to give the next sample.

Each arm is a fixed :class:`~splitexit.policies.plan.Plan`. Before a sample runs, UCB
picks an arm; when its answer is back, the policy sees only the confidences of
the exits the sample ran, and scores the arm with the papers' unsupervised reward

    r = C_exit − μ · cost(route)

where C_exit is the top probability at the exit that answered and cost is the
:class:`~splitexit.policies.costs.CostModel` of the route the plan gave it.

**SplitEE** (arm i = split layer i): the sample may exit only at block i
(α there, 1 elsewhere); otherwise the tier hosting block i passes it on and
nothing exits before the final layer. Then r(i) = C_i − λ·i if it exited, and
C_L − λ·i − o if it was offloaded (the cloud's compute free), as in the paper.
**SplitEE-S** also credits the same sample's reward to every shallower split
j < i, but only where that reward was really observed: C_j is (block j ran),
and if the sample did not exit at j, C_L is known only if it was offloaded.
**I-SplitEE** (Bajpai, Jaiswal & Hanawal 2024) learns the split layer for an
image stream under distortions with UCB1 and the SplitEE-S update, on a device
that hosts the whole network: its arms are a split after each exit plus one
that runs every block on the device and never offloads (on such a chain that is
split L), and its reward prices only what the device spends,
C_k − μ·λ_d·k if it exits at k, C_L − μ·(o + λ_d·k) if offloaded after k,
C_L − μ·λ_d·L on the device-only arm (:class:`DeviceSideCosts`: what the edge
and the cloud compute is free). It is stationary: it does not forget. The drift-adaptive variants are separately
named: **splitee-d** (discounted UCB, Garivier & Moulines), **splitee-sw**
(sliding-window UCB) and **splitee-cd** (UCB restarted when a label-free
change detector, :mod:`~splitexit.policies.drift`, sees the stream shift).

Pure Python + numpy, no I/O; state goes to and from plain dicts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitexit.policies.chain import Chain, Route, Unobserved, observed, route_taken, walk
from splitexit.policies.costs import CostModel
from splitexit.policies.drift import PageHinkley
from splitexit.policies.plan import Plan
from splitexit.shared.tiers import Tier


class UCB:
    """UCB1 over ``arms`` arms; with ``discount`` < 1, discounted UCB; with a ``window``, sliding-window UCB.

    Plays every arm once (in order) first, then the arm maximising
    mean_i + c·√(ln t / N_i). With a discount γ, every round first multiplies
    all counts N_i, reward sums and the round count t by γ (γ = 1: UCB1)
    (Garivier & Moulines). With a window W, counts, sums and t cover only the
    last W rounds, so an arm unplayed for W rounds is tried again. Either way old
    rewards fade and the choice can move when the costs or the stream change.
    Ties go to the lowest arm, so the choice is deterministic.
    """

    def __init__(self, arms: int, *, c: float = 1.0, discount: float = 1.0, window: int = 0) -> None:
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must lie in (0, 1], got {discount}")
        if window < 0:
            raise ValueError(f"window must be 0 (none) or a number of rounds, got {window}")
        self.c = c
        self.discount = discount
        self.window = window
        self.counts = np.zeros(arms)
        self.sums = np.zeros(arms)
        self.rounds = 0.0
        self.history: deque[dict[int, float]] = deque()  # the rounds in the window (window > 0 only)

    def index(self) -> np.ndarray:
        """mean_i + c·√(ln t / N_i) per arm (+inf for an arm never observed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            index = self.sums / self.counts + self.c * np.sqrt(np.log(max(self.rounds, 1.0)) / self.counts)
        return np.where(self.counts > 0.0, index, np.inf)

    def select(self) -> int:
        """The first arm never observed, else the highest index (ties: the lowest arm)."""
        return int(np.argmax(self.index()))

    def reset(self) -> None:
        """Forget everything, as if no round had been played."""
        self.counts[:] = 0.0
        self.sums[:] = 0.0
        self.rounds = 0.0
        self.history.clear()

    def update(self, rewards: Mapping[int, float]) -> None:
        """One round: the played arm's reward, plus any side observations."""
        self.counts *= self.discount
        self.sums *= self.discount
        self.rounds = self.rounds * self.discount + 1.0
        self._add(rewards, 1.0)
        if self.window:
            self.history.append(dict(rewards))
            if len(self.history) > self.window:
                self._add(self.history.popleft(), -1.0)
                self.rounds -= 1.0

    def _add(self, rewards: Mapping[int, float], sign: float) -> None:
        for arm, reward in rewards.items():
            self.counts[arm] += sign
            self.sums[arm] += sign * reward

    def means(self) -> np.ndarray:
        """Mean reward per arm (NaN where never observed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1e-300), np.nan)

    def best(self) -> int:
        """The arm with the highest mean so far; -1 before any observation."""
        means = self.means()
        return -1 if np.isnan(means).all() else int(np.nanargmax(means))

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"counts": self.counts.tolist(), "sums": self.sums.tolist(), "rounds": self.rounds}
        if self.window:
            state["history"] = [[[arm, reward] for arm, reward in round_.items()] for round_ in self.history]
        return state

    def load_dict(self, state: Mapping[str, Any]) -> None:
        counts, sums = np.array(state["counts"], dtype=float), np.array(state["sums"], dtype=float)
        if counts.shape != self.counts.shape or sums.shape != self.sums.shape:
            raise ValueError(f"saved state has {counts.size} arms, this bandit {self.counts.size}")
        history = deque({int(arm): float(reward) for arm, reward in round_} for round_ in state.get("history", []))
        if self.window and len(history) != min(int(state["rounds"]), self.window):
            raise ValueError("saved state has no window of rounds to carry on from")
        self.counts, self.sums, self.rounds, self.history = counts, sums, float(state["rounds"]), history


@dataclass(frozen=True)
class Arm:
    label: str  # e.g. "split 2" or "α_d=0.90 α_e=0.80"
    plan: Plan


def reward(plan: Plan, chain: Chain, costs: CostModel, mu: float, confidences: Mapping[int, float]) -> float:
    """r = C_exit − μ·cost for the route ``plan`` gives a sample showing ``confidences``.

    Raises :class:`~splitexit.policies.chain.Unobserved` if that needs an exit the sample never ran.
    """
    lookup = observed(confidences)
    route = walk(plan, chain, lookup)
    return lookup(route.exit_block) - mu * costs.cost(route)


class BanditPolicy:
    """UCB over a fixed set of plans, one independent bandit per group of samples.

    ``group_of`` puts a sample in a group (always 0 here; a router overrides it).
    ``side_observations`` credits every arm listed before the played one whose
    reward the sample really revealed (SplitEE-S, with arms ordered by depth).
    ``credits`` lists, per arm, other arms whose reward every sample played on
    it reveals, whatever the sample (the cascade's eager arms); they are
    credited too. A ``detector`` sees C_1 of every sample; when it flags a
    change, every bandit starts afresh.
    """

    needs_embedding = False

    def __init__(
        self,
        name: str,
        arms: Sequence[Arm],
        chain: Chain,
        *,
        costs: CostModel,
        mu: float = 1.0,
        c: float = 1.0,
        discount: float = 1.0,
        window: int = 0,
        side_observations: bool = False,
        groups: int = 1,
        detector: PageHinkley | None = None,
        credits: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.name = name
        self.labels = [arm.label for arm in arms]
        self.chain = chain
        self.costs = costs
        self.mu = mu
        self.side_observations = side_observations
        self.detector = detector
        self.credits = [list(arms) for arms in credits] if credits is not None else None
        self.bandits = [UCB(len(arms), c=c, discount=discount, window=window) for _ in range(groups)]
        self.plans = [[replace(arm.plan, policy=name, arm=(g, i)) for i, arm in enumerate(arms)] for g in range(groups)]
        self.samples = 0
        self._taken: dict[tuple[int, int], Route] = {}  # (arm, exit block) -> route; the same in every group

    def group_of(self, embedding: np.ndarray | None) -> int:
        return 0

    def group_name(self, group: int) -> str:
        return ""

    def plan(self, embedding: np.ndarray | None) -> Plan:
        group = self.group_of(embedding)
        return self.plans[group][self.bandits[group].select()]

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        if plan.arm is None or plan.policy != self.name:
            raise ValueError(f"{self.name} cannot learn from a plan it did not make ({plan.policy!r})")
        group, played = plan.arm
        if self.detector is not None and self.detector.update(confidences[1]):
            for bandit in self.bandits:
                bandit.reset()
        key = (played, max(confidences))
        route = self._taken.get(key) or self._taken.setdefault(key, route_taken(plan, self.chain, confidences))
        rewards = {played: confidences[route.exit_block] - self.mu * self.costs.cost(route)}
        shallower = range(played) if self.side_observations else ()
        for arm in [*shallower, *(self.credits[played] if self.credits is not None else ())]:
            with suppress(Unobserved):  # a credited arm's reward is always revealed but at a tie with α in float32
                rewards[arm] = reward(self.plans[group][arm], self.chain, self.costs, self.mu, confidences)
        self.bandits[group].update(rewards)
        self.samples += 1

    def state(self) -> dict[str, Any]:
        """What the policy has learned, for people and metrics (a fresh copy)."""
        groups = []
        for group, (plans, bandit) in enumerate(zip(self.plans, self.bandits, strict=True)):
            best = bandit.best()
            chosen = plans[best] if best >= 0 else None
            groups.append(
                {
                    "name": self.group_name(group),
                    "pulls": bandit.counts.tolist(),
                    "mean_reward": bandit.means().tolist(),
                    "best_arm": best,
                    "best_label": self.labels[best] if best >= 0 else "",
                    "thresholds": list(chosen.thresholds or ()) if chosen else [],
                    "device_last_block": chosen.last_block.get(Tier.DEVICE, 0) if chosen else 0,
                    "edge_last_block": chosen.last_block.get(Tier.EDGE, 0) if chosen else 0,
                }
            )
        changes = {"changes": self.detector.changes} if self.detector is not None else {}
        return {
            "policy": self.name,
            "samples": self.samples,
            "arms": list(self.labels),
            "groups": groups,
            "costs": self.costs.as_dict(),
            **changes,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to carry on exactly where it stands."""
        state = {
            "policy": self.name,
            "arms": list(self.labels),
            "samples": self.samples,
            "bandits": [bandit.to_dict() for bandit in self.bandits],
        }
        if self.detector is not None:
            state["detector"] = self.detector.to_dict()
        return state

    def load_dict(self, state: Mapping[str, Any]) -> None:
        if state["policy"] != self.name or list(state["arms"]) != self.labels:
            raise ValueError(f"saved state is for {state['policy']!r} with other arms; {self.name} starts afresh")
        if len(state["bandits"]) != len(self.bandits):
            raise ValueError(f"saved state has {len(state['bandits'])} groups, {self.name} has {len(self.bandits)}")
        for bandit, saved in zip(self.bandits, state["bandits"], strict=True):
            bandit.load_dict(saved)
        if self.detector is not None:
            self.detector.load_dict(state["detector"])
        self.samples = int(state["samples"])


class DeviceSideCosts(CostModel):
    """I-SplitEE's price of a route: the device's blocks and every link crossed; the edge's and cloud's compute free.

    It shares the block and link costs of the model it is made from (:meth:`of`), so measured costs reach it.
    """

    @classmethod
    def of(cls, costs: CostModel) -> DeviceSideCosts:
        return cls(costs.block, costs.link)

    def cost(self, route: Route) -> float:
        device = sum(self.block[Tier.DEVICE] * run.blocks for run in route.runs if run.tier is Tier.DEVICE)
        return device + sum(self.link[tier] for tier in route.offloaded_from)


def i_splitee_arms(chain: Chain, alpha: float) -> list[Arm]:
    """The split arms; on a device hosting the final block, the last one runs everything there ("device only")."""
    arms = split_arms(chain, alpha)
    if chain.last_exit(Tier.DEVICE) == chain.num_blocks:
        arms[-1] = Arm("device only", arms[-1].plan)
    return arms


def split_plan(chain: Chain, split: int, alpha: float) -> Plan:
    """SplitEE's arm ``split``: α at that exit only, and the sample leaves the tier running it right after.

    The tier hosting block ``split`` stops there; a stop point is set only where
    the next tier can resume, so on disjoint ranges a tier may run on (with no
    early exits) to where the next one starts. An edge asked to stop before it
    resumes relays the sample straight to the cloud.
    """
    thresholds = tuple(alpha if block == split else 1.0 for block in range(1, chain.num_blocks + 1))
    last_block: dict[Tier, int] = {}
    device_end = chain.last_exit(Tier.DEVICE)
    if split < device_end and chain.resumes(Tier.EDGE, split + 1):
        last_block[Tier.DEVICE] = split
    edge_resume = last_block.get(Tier.DEVICE, device_end) + 1
    # The cloud resumes at the block after the edge's stop, or where the edge resumed if it relays.
    if split < chain.last_exit(Tier.EDGE) and chain.resumes(Tier.CLOUD, max(split + 1, edge_resume)):
        last_block[Tier.EDGE] = split
    return Plan("", thresholds, last_block)


def split_arms(chain: Chain, alpha: float) -> list[Arm]:
    """One arm per split layer 1..L, shallowest first (the order SplitEE-S relies on)."""
    return [Arm(f"split {i}", split_plan(chain, i, alpha)) for i in range(1, chain.num_blocks + 1)]
