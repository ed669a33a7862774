"""A network cut into blocks, each with its exit head: the shape every early-exit model here has.

A :class:`Segment` is what one ONNX file holds (``x -> (logits, activation)``);
a :class:`SegmentedModel` chains them, so that ``model(x)`` gives the logits at
every exit and ``model.segment(k)`` is the part a tier resumes at.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn


class Segment(nn.Module):
    """One block and its exit head: ``x -> (logits, activation)``."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        activation = self.body(x)
        return self.head(activation), activation


class SegmentedModel(nn.Module):
    """Segments run one after the other; an exit after every one."""

    def __init__(self, segments: Iterable[Segment]) -> None:
        super().__init__()
        self.segments = nn.ModuleList(segments)

    @property
    def num_blocks(self) -> int:
        return len(self.segments)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Logits at every exit, shallowest first."""
        exits = []
        for segment in self.segments:
            logits, x = segment(x)
            exits.append(logits)
        return exits

    def segment(self, k: int) -> Segment:
        """Block ``k`` (1-based) with its exit head."""
        if not 1 <= k <= self.num_blocks:
            raise IndexError(f"block {k} is outside 1..{self.num_blocks}")
        return self.segments[k - 1]
