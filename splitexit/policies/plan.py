"""Exit policies: per sample, where it may stop and where it must travel on.

Pure Python, no I/O. The device's policy decides a :class:`Plan` once per
sample; the plan travels with the sample (``Plan`` on the wire) and
every tier follows it: after each block it runs, a tier exits if the exit's
confidence beats the plan's threshold, and it passes the sample on when it
reaches the plan's stop point or the end of its hosted blocks. The final exit
always answers. When the answer comes back, the device shows the policy what
was observed (:meth:`Policy.observe`), so online policies learn without labels.

``confidence`` is the top softmax probability at an exit (C_i in the papers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Protocol, cast

import numpy as np

from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import BlockRange
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier

OVERRIDE = "override"  # the policy name of a plan a client spelled out in its request


@dataclass(frozen=True)
class Plan:
    """How one sample may exit, decided at the device and followed by every tier."""

    policy: str
    # α per exit: exit at block k when C_k > α_k (strictly). None: each tier's own thresholds.
    thresholds: tuple[float, ...] | None = None
    # The device / edge pass the sample on after this block even if they host more.
    last_block: Mapping[Tier, int] = field(default_factory=dict)
    _: KW_ONLY
    # Which of its choices the deciding policy made, as (group, arm), handed back to
    # Policy.observe(); never on the wire. None: the plan is no arm of a bandit.
    arm: tuple[int, int] | None = None
    # A shadow run: no early exit, so every exit's label comes back and the deciding policy learns how its
    # early answers would have agreed with the final one (:class:`Shadowing`); on the wire it is the final layer.
    shadow: bool = False

    def stop_block(self, tier: Tier, hosted: BlockRange) -> int:
        """The last block ``tier`` runs for this sample before passing it on."""
        cap = self.last_block.get(tier, 0)
        return min(hosted.last, cap) if cap else hosted.last

    def to_proto(self) -> pb.Plan:
        return pb.Plan(
            name=self.policy,
            exit_thresholds=self.thresholds or (),
            device_last_block=self.last_block.get(Tier.DEVICE, 0),
            edge_last_block=self.last_block.get(Tier.EDGE, 0),
        )

    @classmethod
    def from_proto(cls, override: pb.Plan, num_exits: int, default_policy: str) -> Plan:
        """The plan a request carries; checks thresholds and stop points."""
        thresholds: tuple[float, ...] | None = None
        if override.exit_thresholds:
            if len(override.exit_thresholds) != num_exits:
                raise InvalidInput(
                    f"exit_thresholds needs one value per exit ({num_exits}), got {len(override.exit_thresholds)}"
                )
            thresholds = tuple(override.exit_thresholds)
        elif override.HasField("threshold"):
            thresholds = (override.threshold,) * num_exits
        check_thresholds(thresholds or ())
        last_block = {}
        for tier, block in ((Tier.DEVICE, override.device_last_block), (Tier.EDGE, override.edge_last_block)):
            if block > num_exits:
                raise InvalidInput(f"{tier.value}_last_block {block} is beyond the model's {num_exits} blocks")
            if block:
                last_block[tier] = block
        return cls(policy=override.name or default_policy, thresholds=thresholds, last_block=last_block)


def check_thresholds(thresholds: Sequence[float]) -> None:
    for value in thresholds:
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"exit thresholds must lie in [0, 1], got {value}")


def override(threshold: float | None = None, policy: str = "") -> pb.Plan | None:
    """A request's ``policy`` field: one α at every exit, or a device policy by name, or neither (None)."""
    if threshold is None and not policy:
        return None
    return pb.Plan(threshold=threshold, name=policy)


def is_explicit(override: pb.Plan) -> bool:
    """Whether a client's override spells out a plan (rather than naming a policy or nothing)."""
    return bool(
        override.exit_thresholds
        or override.HasField("threshold")
        or override.device_last_block
        or override.edge_last_block
    )


class Policy(Protocol):
    """A device-side policy: plans each sample, and may learn from what it observed."""

    name: str
    # Whether plan() looks at the sample: only then does the device compute its embedding.
    needs_embedding: bool

    def plan(self, embedding: np.ndarray | None) -> Plan:
        """``embedding`` is the sample's :func:`~splitexit.policies.dimee.embed` if ``needs_embedding``, else None."""

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        """``confidences`` maps every exit the sample ran (1-based block) to C_k."""


class Shadowing(Policy, Protocol):
    """A policy that makes shadow plans (:attr:`Plan.shadow`) and learns from every exit's label on them."""

    def observe_shadow(self, plan: Plan, confidences: Mapping[int, float], labels: Mapping[int, int]) -> None:
        """Instead of :meth:`observe` for a shadow plan: ``labels`` maps every exit (1-based block) to its label."""


def show(policy: Policy, plan: Plan, confidences: Mapping[int, float], labels: Callable[[], Mapping[int, int]]) -> None:
    """Show ``policy`` what a sample revealed; the labels (read only for a shadow plan) when the plan was a shadow
    run."""
    if plan.shadow:
        cast(Shadowing, policy).observe_shadow(plan, confidences, labels())
    else:
        policy.observe(plan, confidences)


class TierThresholds:
    """BranchyNet / DeeBERT style: every tier exits with its own configured α per exit."""

    name = "thresholds"
    needs_embedding = False

    def plan(self, embedding: np.ndarray | None) -> Plan:
        return Plan(self.name)

    def observe(self, plan: Plan, confidences: Mapping[int, float]) -> None:
        """Fixed thresholds learn nothing."""


def exits_at(block: int, confidence: float, thresholds: Sequence[float], num_blocks: int) -> bool:
    """The exit rule every tier applies after every block: the final exit, or C_k > α_k."""
    return block == num_blocks or confidence > thresholds[block - 1]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of one exit's logits, computed stably in float64."""
    probabilities: np.ndarray = softmax_rows(logits[np.newaxis])[0]
    return probabilities


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """:func:`softmax` of every row of a batch of exit logits at once."""
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def top_probability(logits: np.ndarray) -> float:
    """C_k: the highest softmax probability of one exit's logits."""
    return float(softmax(logits).max())
