"""ONNX against torch: every segment's outputs on real inputs, and every exit's logits through the ONNX chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from splitexit.packaging.description import PackagingError

PARITY_TOLERANCE = 1e-4
EVAL_BATCH = 1000


class Segmented(Protocol):
    """A torch model cut into blocks, each ``x -> (logits, activation)`` (the CNN, the text model, a description)."""

    def segment(self, k: int) -> nn.Module: ...


class ParityError(PackagingError):
    """An ONNX segment's outputs differ from torch's by more than ``PARITY_TOLERANCE``."""


def check_parity(model: Segmented, sessions: Sequence[ort.InferenceSession], x: Tensor, where: str = "") -> float:
    """Run every segment on its real input in torch and ONNX; the largest difference, or :class:`ParityError`.

    Block k gets torch's activation of block k-1, so a difference is block k's own.
    ``where`` says what ``x`` is, for the error (``on the example input``).
    """
    largest = 0.0
    with torch.no_grad():
        for k, session in enumerate(sessions, start=1):
            expected = [t.numpy() for t in model.segment(k)(x)]
            try:
                actual = session.run(["logits", "activation"], {"x": x.numpy()})
            except Exception as exc:  # onnxruntime's own errors: a traced shape that does not hold here
                raise ParityError(f"block{k}.onnx fails in onnxruntime{where}: {first_line(exc)}") from None
            for name, want, got in zip(("logits", "activation"), expected, actual, strict=True):
                if want.shape != got.shape:
                    raise ParityError(
                        f"block{k}.onnx gives {name} of shape {list(got.shape)}, torch {list(want.shape)}{where}"
                    )
                diff = float(np.abs(want - got).max()) if want.size else 0.0
                if not diff <= PARITY_TOLERANCE:
                    raise ParityError(
                        f"block{k}.onnx {name} differs from torch by {diff:.2e} > {PARITY_TOLERANCE}{where}"
                    )
                largest = max(largest, diff)
            x = torch.from_numpy(expected[1])
    return largest


def onnx_exits(sessions: Sequence[ort.InferenceSession], x: np.ndarray) -> list[np.ndarray]:
    """Logits at every exit from chaining the ONNX segments, in batches of ``EVAL_BATCH``."""
    exits: list[list[np.ndarray]] = [[] for _ in sessions]
    for start in range(0, len(x), EVAL_BATCH):
        activation = x[start : start + EVAL_BATCH]
        for k, session in enumerate(sessions):
            logits, activation = session.run(["logits", "activation"], {"x": activation})
            exits[k].append(logits)
    return [np.concatenate(chunks) for chunks in exits]


def exit_accuracy(
    sessions: Sequence[ort.InferenceSession], batches: Sequence[np.ndarray], labels: np.ndarray
) -> list[float]:
    """The share of ``labels`` each exit gets right through the ONNX chain, ``batches`` in order, to 4 decimals."""
    per_batch = [onnx_exits(sessions, batch) for batch in batches]
    predictions = [np.concatenate([exits[k].argmax(1) for exits in per_batch]) for k in range(len(sessions))]
    return [round(float((predicted == labels).mean()), 4) for predicted in predictions]


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (torch's and onnxruntime's run to pages)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
