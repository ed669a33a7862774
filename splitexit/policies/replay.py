"""Replay a test stream through a policy offline, with exactly the tiers' plan semantics.

A stream holds what the model showed at every exit for every sample (top
probability C_k and predicted label), computed once. For each sample, in a
given order, :func:`replay` asks the policy for a plan, sends the plan through
the same encoding the wire uses (``Plan``: thresholds become float32),
follows it with :func:`splitexit.policies.chain.walk` as the tiers would, and shows the
policy the confidences of the exits the sample ran, rounded to float32 as
answers carry them (and, after a shadow run, every exit's label, as the hops
carry them). So a replay and the live tiers make the same decisions.

Regret is measured against the best fixed arm in hindsight, per stationary
phase of the stream: ``Σ_t (max_a r̄_a − r̄_{a_t})`` with r̄ the mean reward of
an arm over the phase (pseudo-regret).

Pure Python + numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitexit.policies.chain import Chain, Route, walk
from splitexit.policies.costs import CostModel
from splitexit.policies.plan import Plan, Policy, show
from splitexit.shared.tiers import TIERS


@dataclass(frozen=True, kw_only=True)
class ExitStream:
    """Per-exit outcomes of a labelled test set, and the phase (stationary part) of each sample."""

    confidences: np.ndarray  # [N, L] float64: C_k, the top softmax probability at exit k
    predictions: np.ndarray  # [N, L] int: the label exit k predicts
    labels: np.ndarray  # [N]
    embeddings: np.ndarray  # [N, D] float64: splitexit.policies.plan.embed of each block-1 input
    phases: np.ndarray  # [N] int: 0, 1, ... in the order the stream passes through them

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_blocks(self) -> int:
        blocks: int = self.confidences.shape[1]
        return blocks

    def take(self, indices: np.ndarray) -> ExitStream:
        """The samples at ``indices`` (in that order), e.g. a smaller stream for a quick run."""
        return ExitStream(**{name: getattr(self, name)[indices] for name in ExitStream.__dataclass_fields__})

    def order(self, seed: int) -> np.ndarray:
        """Phase after phase; within each, the samples in a seeded random order."""
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.permutation(np.flatnonzero(self.phases == p)) for p in np.unique(self.phases)])


@dataclass(frozen=True, kw_only=True)
class Trace:
    """What a policy did with each sample of one replay, in stream order."""

    order: np.ndarray  # sample indices
    routes: tuple[Route, ...]
    exit_block: np.ndarray
    exit_tier: np.ndarray  # index into splitexit.policies.chain.TIERS
    correct: np.ndarray  # bool
    arm: np.ndarray  # the arm played (-1: the policy has no arms)

    def cost(self, costs: CostModel) -> np.ndarray:
        """What each sample's route cost under ``costs`` (any convention, not only the policy's own)."""
        return np.array([costs.cost(route) for route in self.routes])


def wire(plan: Plan, num_blocks: int) -> Plan:
    """The plan as the tiers receive it: through ``Plan`` and back."""
    return Plan.from_proto(plan.to_proto(), num_blocks, plan.policy)


def follow(plan: Plan, chain: Chain, confidences: Sequence[float], default_thresholds: Sequence[float] | None) -> Route:
    """The route the tiers give a sample showing ``confidences`` (C_1..C_L) under a received plan."""
    return walk(plan, chain, lambda block: confidences[block - 1], default_thresholds)


def ran(route: Route, reported: Sequence[float]) -> dict[int, float]:
    """What the answer reports: C_k of every exit the sample ran (``reported``: C_1..C_L as float32)."""
    return {block: reported[block - 1] for run in route.runs for block in range(run.first, run.last + 1)}


def as_reported(confidences: np.ndarray) -> list[list[float]]:
    """Confidences rounded to float32, as answers carry them."""
    reported: list[list[float]] = confidences.astype(np.float32).astype(np.float64).tolist()
    return reported


def replay(
    policy: Policy,
    stream: ExitStream,
    order: np.ndarray,
    chain: Chain,
    default_thresholds: Sequence[float] | None = None,
) -> Trace:
    """Run ``policy`` over ``stream`` in ``order``, one sample at a time, as the device would."""
    received: dict[int, tuple[Plan, Plan]] = {}  # id(plan) -> (plan, wire(plan)); policies reuse their plans
    confidences, reported = stream.confidences.tolist(), as_reported(stream.confidences)
    routes, arm = [], []
    for index in order:
        plan = policy.plan(stream.embeddings[index])
        cached = received.get(id(plan))
        if cached is None or cached[0] is not plan:
            cached = received[id(plan)] = (plan, wire(plan, chain.num_blocks))
        route = follow(cached[1], chain, confidences[index], default_thresholds)
        seen = ran(route, reported[index])
        show(policy, plan, seen, lambda: {block: int(stream.predictions[index, block - 1]) for block in seen})
        routes.append(route)
        arm.append(-1 if plan.arm is None else plan.arm[1])
    blocks = np.array([route.exit_block for route in routes], dtype=np.int64)
    return Trace(
        order=order,
        routes=tuple(routes),
        exit_block=blocks,
        exit_tier=np.array([TIERS.index(route.exit_tier) for route in routes], dtype=np.int64),
        correct=stream.predictions[order, blocks - 1] == stream.labels[order],
        arm=np.array(arm, dtype=np.int64),
    )


def arm_rewards(arms: Sequence[Plan], stream: ExitStream, chain: Chain, costs: CostModel, mu: float) -> np.ndarray:
    """``[N, A]``: the reward each arm would earn on each sample (full information, for the oracle)."""
    received = [wire(plan, chain.num_blocks) for plan in arms]
    confidences, reported = stream.confidences.tolist(), as_reported(stream.confidences)
    rewards = np.empty((len(stream), len(arms)))
    for index in range(len(stream)):
        for a, plan in enumerate(received):
            route = follow(plan, chain, confidences[index], None)
            rewards[index, a] = reported[index][route.exit_block - 1] - mu * costs.cost(route)
    return rewards


def best_arm(rewards: np.ndarray) -> int:
    """The oracle: the best fixed arm in hindsight over the whole stream (by mean reward)."""
    return int(rewards.mean(axis=0).argmax())


def regret(trace: Trace, rewards: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Cumulative pseudo-regret after each sample, against the best fixed arm of each phase."""
    means = np.stack([rewards[phases == p].mean(axis=0) for p in np.unique(phases)])  # [phases, A]
    phase = np.searchsorted(np.unique(phases), phases[trace.order])
    return np.cumsum(means[phase].max(axis=1) - means[phase, trace.arm])
