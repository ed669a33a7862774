"""Fashion-MNIST as normalised tensors, via the same preprocessing that serving uses."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lab import fashion_mnist
from splitexit.shared.manifest import ImageInput
from splitexit.shared.preprocess import normalize_images
from training.cnn import INPUT_SHAPE


def image_input() -> ImageInput:
    """The input spec: mean and std of all training pixels in [0, 1], to 4 decimals."""
    pixels, _ = fashion_mnist.load("train")
    scaled = pixels.astype(np.float64) / 255.0
    channels, height, width = INPUT_SHAPE
    return ImageInput(
        channels=channels,
        height=height,
        width=width,
        mean=round(float(scaled.mean()), 4),
        std=round(float(scaled.std()), 4),
    )


def load_tensors(split: str, spec: ImageInput, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """``(float32 [N, 1, 28, 28], int64 [N])`` for a split, the first ``limit`` samples only if given."""
    pixels, labels = fashion_mnist.load(split)
    pixels, labels = pixels[:limit], labels[:limit]
    return torch.from_numpy(normalize_images(pixels, spec)), torch.from_numpy(labels.astype(np.int64))
