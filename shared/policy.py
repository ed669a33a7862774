"""Exit policies: given a sample's confidence at an exit, stop here or go on.

Pure Python, no I/O. A tier asks its policy after every block it runs; the
block where the policy says "exit" answers, and if no hosted block does, the
activation travels to the next tier. The final exit always answers.

``confidence`` is the top softmax probability at the exit (C_i in the papers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from shared.errors import InvalidInput
from shared.proto import splitexit_pb2 as pb


class ExitPolicy(Protocol):
    """Decides, exit by exit, whether a sample stops."""

    name: str

    def should_exit(self, block: int, confidence: float) -> bool: ...


class ThresholdPolicy:
    """Exit at block k when C_k > α_k (BranchyNet / DeeBERT style).

    Strictly greater: α = 0 exits at the first exit, α = 1 never exits early
    (a float32 softmax can round to exactly 1.0).
    """

    name = "thresholds"

    def __init__(self, thresholds: Sequence[float]) -> None:
        for value in thresholds:
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"exit thresholds must lie in [0, 1], got {value}")
        self.thresholds = tuple(float(t) for t in thresholds)

    def should_exit(self, block: int, confidence: float) -> bool:
        return confidence > self.thresholds[block - 1]

    @classmethod
    def from_override(cls, override: pb.PolicyOverride, num_exits: int) -> ThresholdPolicy | None:
        """The per-request policy a client asked for, or None to keep the tier's own."""
        if override.exit_thresholds:
            if len(override.exit_thresholds) != num_exits:
                raise InvalidInput(
                    f"exit_thresholds needs one value per exit ({num_exits}), got {len(override.exit_thresholds)}"
                )
            return cls(override.exit_thresholds)
        if override.HasField("threshold"):
            return cls([override.threshold] * num_exits)
        return None


def top_probability(logits: np.ndarray) -> float:
    """max softmax(logits), computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max()
    return float(1.0 / np.exp(shifted).sum())
