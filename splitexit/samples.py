"""Real test samples as a client would send them: Fashion-MNIST test images as PNG bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared import fashion_mnist


@dataclass(frozen=True)
class LabelledImage:
    index: int  # position in the 10,000-image test set
    label: int
    png: bytes


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 ``[H, W]`` grayscale pixels -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_images(count: int, seed: int = 0) -> list[LabelledImage]:
    """``count`` distinct test images in a seeded random order."""
    images, labels = fashion_mnist.load("test")
    chosen = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return [LabelledImage(int(i), int(labels[i]), encode_png(images[i])) for i in chosen]
