"""Raw inputs to the tensor that block 1 takes, identical in training and serving.

Image bytes (PNG, JPEG, anything Pillow reads) are decoded, converted to the
model's channel count, resized to its input size if needed, scaled to [0, 1]
and normalised with the manifest's mean and std.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import ImageInput

MAX_IMAGE_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding them
SMALL_IMAGE_BYTES = 16 << 10  # an image at most this big and ...
SMALL_IMAGE_PIXELS = 128 * 128  # ... this many pixels decodes on the event loop (see OpenedImage.small)
FILE_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")  # Pillow names the buffer it read; people need not


def normalize_images(pixels: np.ndarray, spec: ImageInput) -> np.ndarray:
    """uint8 ``[N, H, W]`` or ``[N, C, H, W]`` pixels -> float32 ``[N, C, H, W]``."""
    if pixels.ndim == 3:
        pixels = pixels[:, None, :, :]
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    return (scaled - np.float32(spec.mean)) / np.float32(spec.std)


def decode_image(data: bytes, spec: ImageInput) -> np.ndarray:
    """Encoded image bytes -> float32 ``[1, C, H, W]``; raises :class:`InvalidInput`."""
    return open_image(data).tensor(spec)


@dataclass
class OpenedImage:
    """An image whose header was read and checked; its pixels are not decoded yet."""

    image: Image.Image
    size: int  # encoded bytes

    @property
    def small(self) -> bool:
        """Whether decoding costs so little (tens of µs) that handing it to a thread would cost more."""
        width, height = self.image.size
        return self.size <= SMALL_IMAGE_BYTES and width * height <= SMALL_IMAGE_PIXELS

    def tensor(self, spec: ImageInput) -> np.ndarray:
        """The pixels decoded, converted, resized and normalised to float32 ``[1, C, H, W]``."""
        with _readable(self.size):
            self.image.load()
        image = self.image.convert("L" if spec.channels == 1 else "RGB")
        if image.size != (spec.width, spec.height):
            image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        pixels = pixels[None, :, :] if spec.channels == 1 else pixels.transpose(2, 0, 1)
        return normalize_images(pixels[None], spec)


def open_image(data: bytes) -> OpenedImage:
    """Read and check an image's header (cheap whatever the image); raises :class:`InvalidInput`."""
    if not data:
        raise InvalidInput("the image is empty (0 bytes)")
    with _readable(len(data)), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(f"the image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} are accepted")
    return OpenedImage(image, len(data))


@contextlib.contextmanager
def _readable(size: int) -> Iterator[None]:
    """Pillow's errors on unreadable bytes as :class:`InvalidInput`."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(f"the image claims more than {MAX_IMAGE_PIXELS:,} pixels; it is refused unread") from None
    except UnidentifiedImageError:
        raise InvalidInput(
            f"the {size:,} bytes sent are not an image in a format Pillow reads (PNG, JPEG, ...)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, NotImplementedError) as exc:
        reason = FILE_REPR.sub("the image", str(exc)) or type(exc).__name__
        raise InvalidInput(f"the {size:,} bytes sent are not a readable image: {reason}") from None
