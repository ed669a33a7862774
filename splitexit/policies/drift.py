"""Label-free change detection on the stream the device sees: a two-sided Page-Hinkley test.

Every sample runs block 1 on the device, whatever its plan, so C_1 (the top
probability at the first exit) is observed for every sample and does not
depend on what the policy chose. When the inputs' distribution shifts (noise,
blur, another domain), the distribution of C_1 shifts with it. The
Page-Hinkley test (Page 1954; Hinkley 1971) watches the cumulative deviation
of C_1 from its running mean:

    U_t = Σ (x_s − x̄_s − δ),   D_t = Σ (x_s − x̄_s + δ)

and flags a change when U_t − min U > h (the mean rose) or max D − D_t > h
(it fell). δ is the drift tolerated, h the detection threshold. After a
change, the test starts afresh, and so does the bandit it guards (the
``-cd`` policies, in the manner of Cao et al.'s M-UCB).

Pure Python, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PageHinkley:
    """Two-sided Page-Hinkley test on a stream of values in [0, 1]."""

    FIELDS = ("count", "mean", "up", "up_min", "down", "down_max", "changes")

    def __init__(self, delta: float, threshold: float) -> None:
        if delta < 0 or threshold <= 0:
            raise ValueError(f"Page-Hinkley needs δ ≥ 0 and h > 0, got δ={delta}, h={threshold}")
        self.delta = delta
        self.threshold = threshold
        self.changes = 0
        self.restart()

    def restart(self) -> None:
        self.count = 0
        self.mean = self.up = self.up_min = self.down = self.down_max = 0.0

    def update(self, value: float) -> bool:
        """Fold in one value; True if it reveals a change (the test then starts afresh)."""
        self.count += 1
        self.mean += (value - self.mean) / self.count
        self.up += value - self.mean - self.delta
        self.down += value - self.mean + self.delta
        self.up_min = min(self.up_min, self.up)
        self.down_max = max(self.down_max, self.down)
        if self.up - self.up_min > self.threshold or self.down_max - self.down > self.threshold:
            self.changes += 1
            self.restart()
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def load_dict(self, state: Mapping[str, Any]) -> None:
        for name in self.FIELDS:
            setattr(self, name, type(getattr(self, name))(state[name]))
