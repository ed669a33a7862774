"""What a user tells the packager about a network: its blocks, exit heads, input and labels.

Block k maps activation k-1 to activation k (block 1 takes the preprocessed
input); exit k maps activation k to one logit per label. ``example`` is one
batch of block 1's input, as serving will feed it: float32 ``[B, C, H, W]``
for an image model, int64 token ids ``[B, T]`` for a text model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from splitexit.shared.manifest import BlockRange, ImageInput
from splitexit.shared.tiers import Tier


class PackagingError(ValueError):
    """A network that cannot be packaged as described; the message says which block or exit, and why, in one line."""


@dataclass(frozen=True)
class TextPreprocessing:
    """A text model's input: a Hugging Face ``tokenizer.json`` (copied into the package) and its token limit."""

    tokenizer: Path
    max_tokens: int


Preprocessing = ImageInput | TextPreprocessing


@dataclass(frozen=True)
class CheckData:
    """Real inputs every segment is checked on, and with ``labels`` the exits' accuracy is measured on.

    ``inputs`` is one tensor of samples, or a sequence of batches (texts of
    different lengths: one ``[1, T]`` tensor each); ``labels`` holds one class
    index per sample, in the same order.
    """

    inputs: Tensor | Sequence[Tensor]
    labels: Tensor | Sequence[int] | None = None

    def batches(self, size: int = 256) -> list[Tensor]:
        """The inputs in batches of at most ``size`` samples (a sequence of batches is kept as it is)."""
        if isinstance(self.inputs, Tensor):
            return list(self.inputs.split(size))
        return list(self.inputs)

    def label_array(self) -> np.ndarray | None:
        if self.labels is None:
            return None
        labels = self.labels.numpy() if isinstance(self.labels, Tensor) else np.asarray(self.labels)
        return labels.astype(np.int64).reshape(-1)


@dataclass(kw_only=True)
class EarlyExitNetwork:
    """A network to package: ``blocks[k-1]`` and ``exits[k-1]`` are block k and the exit head after it.

    ``default_ranges`` are the blocks each tier hosts unless configured otherwise;
    left empty, the device hosts the first third, the edge the first two thirds
    and the cloud all of it (each from block 1, so any split can be configured).
    ``files`` ship in the package as they are (trained weights, notes): listed in
    ``integrity.json``, never read by a tier.
    """

    name: str
    blocks: Sequence[nn.Module]
    exits: Sequence[nn.Module]
    example: Tensor
    labels: Sequence[str]
    preprocessing: Preprocessing
    data: CheckData | None = None
    version: str = "1"
    default_ranges: dict[Tier, BlockRange] = field(default_factory=dict)
    files: Sequence[Path] = ()

    def ranges(self) -> dict[Tier, BlockRange]:
        """``default_ranges``, or the thirds described above (the edge always one block past the device, if it can)."""
        if self.default_ranges:
            return dict(self.default_ranges)
        n = len(self.blocks)
        device = max(1, round(n / 3))
        edge = min(n, max(device + 1, round(2 * n / 3)))
        return {
            Tier.DEVICE: BlockRange(first=1, last=device),
            Tier.EDGE: BlockRange(first=1, last=edge),
            Tier.CLOUD: BlockRange(first=1, last=n),
        }
