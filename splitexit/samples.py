"""Real test images as a client sends them: PNG bytes with their true labels.

The installed package carries a small pack of real Fashion-MNIST test images,
``splitexit/data/fmnist-test-200.npz`` (200 images drawn with a fixed seed,
their labels and their indices in the 10,000-image test set), so that the
load generator and the serving image need no data set. ``make samples``
(:func:`lab.fashion_mnist.write_pack`) draws it again from the data set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE_PACK = Path(__file__).with_name("data") / "fmnist-test-200.npz"


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


def load_pack(path: Path = SAMPLE_PACK) -> list[LabelledImage]:
    """The pack's images as a client sends them: PNG bytes, with their true labels."""
    with np.load(path) as pack:
        return [
            LabelledImage(int(index), int(label), encode_png(pixels))
            for index, label, pixels in zip(pack["indices"], pack["labels"], pack["images"], strict=True)
        ]
