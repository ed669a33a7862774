"""A network cut into blocks, each fused with its exit head, and one such segment as an ONNX file.

A :class:`Segment` is what one ONNX file holds (``x -> (logits, activation)``);
a :class:`SegmentedModel` chains them, so that ``model(x)`` gives the logits at
every exit and ``model.segment(k)`` is the part a tier resumes at.
:func:`export_segment` writes a segment as the tiers load it: input ``x``,
outputs ``logits`` and ``activation``, the batch axis dynamic.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnxruntime as ort
import torch
from torch import Tensor, nn

OPSET = 17


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


def export_segment(
    segment: nn.Module, example: Tensor, path: Path, dynamic_axes: dict[str, dict[int, str]] | None = None
) -> None:
    """Write one segment (``x -> (logits, activation)``) with the legacy exporter, traced on ``example``.

    The batch axis of every input and output is dynamic; ``dynamic_axes`` may name more
    (a text model's token axis).
    """
    axes = {name: {0: "batch"} for name in ("x", "logits", "activation")}
    for name, extra in (dynamic_axes or {}).items():
        axes[name] = {**axes[name], **extra}
    torch.onnx.export(
        segment,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["x"],
        output_names=["logits", "activation"],
        dynamic_axes=axes,
    )


def open_session(path: Path) -> ort.InferenceSession:
    """An onnxruntime session on the CPU, with as many intra-op threads as torch uses."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
