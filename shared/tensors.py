"""numpy arrays <-> the wire ``Tensor`` (raw little-endian bytes), and the activation codecs.

An activation leaves a tier encoded by the link's codec and arrives back as
float32, whatever the codec:

* ``fp32``: exact, 4 bytes per value;
* ``fp16``: half the bytes, ~1e-3 relative error;
* ``int8``: a quarter of the bytes, affine per tensor (``real = scale * (q - zero_point)``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import TensorSpec
from splitexit.shared.proto import splitexit_pb2 as pb

Codec = Literal["fp32", "fp16", "int8"]

_NUMPY_DTYPES: dict[int, np.dtype] = {
    pb.FP32: np.dtype("<f4"),
    pb.FP16: np.dtype("<f2"),
    pb.INT8: np.dtype("i1"),
    pb.INT64: np.dtype("<i8"),
    pb.UINT8: np.dtype("u1"),
}
MAX_ELEMENTS = 1 << 26  # 64 Mi values: far above any activation, well below memory trouble


def encode(array: np.ndarray, codec: Codec = "fp32") -> pb.Tensor:
    """A float array as a wire tensor, compressed by ``codec``."""
    shape = list(array.shape)
    if codec == "fp32":
        return pb.Tensor(dtype=pb.FP32, shape=shape, raw=array.astype("<f4").tobytes())
    if codec == "fp16":
        return pb.Tensor(dtype=pb.FP16, shape=shape, raw=array.astype("<f2").tobytes())
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    scale = (high - low) / 255.0 or 1.0
    zero_point = int(round(-128 - low / scale))
    quantized = np.clip(np.round(array / scale) + zero_point, -128, 127).astype("i1")
    return pb.Tensor(
        dtype=pb.INT8,
        shape=shape,
        raw=quantized.tobytes(),
        quantization=pb.Quantization(scale=scale, zero_point=zero_point),
    )


def decode(tensor: pb.Tensor) -> np.ndarray:
    """A wire tensor as a numpy array (float32 for every float codec); checks it is well formed."""
    dtype = _NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise InvalidInput(f"tensor dtype {_dtype_name(tensor.dtype)} is not supported")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"tensor shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise InvalidInput(f"tensor shape {list(shape)} has {count:,} values; the limit is {MAX_ELEMENTS:,}")
    if len(tensor.raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"tensor of shape {list(shape)} and dtype {_dtype_name(tensor.dtype)} needs "
            f"{count * dtype.itemsize:,} raw bytes, got {len(tensor.raw):,}"
        )
    values = np.frombuffer(tensor.raw, dtype=dtype).reshape(shape)
    if tensor.dtype == pb.INT8:
        if not tensor.HasField("quantization") or tensor.quantization.scale <= 0:
            raise InvalidInput("an INT8 tensor needs quantization with a positive scale")
        q = tensor.quantization
        return (values.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)
    if tensor.dtype in (pb.FP32, pb.FP16):
        return values.astype(np.float32)
    return values


def check_input(array: np.ndarray, spec: TensorSpec, what: str) -> None:
    """Raise :class:`InvalidInput` unless ``array`` is one sample of the dtype and shape ``spec`` expects.

    Float inputs (images, activations) arrive as float32 whatever their codec and
    must be finite; int64 inputs (token ids) must lie in ``[0, spec.vocab_size)``.
    A dynamic axis takes 1 to ``spec.max_length`` values.
    """
    if array.dtype != np.dtype(spec.dtype):
        kind = "a float tensor (FP32, FP16 or quantized INT8)" if spec.dtype == "float32" else "an INT64 tensor of token ids"
        raise InvalidInput(f"{what} must be {kind}, got {array.dtype}")
    expected = [1, *spec.per_sample_shape()]
    if array.ndim != len(expected) or any(d is not None and n != d for n, d in zip(array.shape, expected)):
        shown = ", ".join("N" if d is None else str(d) for d in expected)
        raise InvalidInput(f"{what} must have shape [{shown}], got {list(array.shape)}")
    dynamic = [n for n, d in zip(array.shape, expected) if d is None]
    if any(n < 1 for n in dynamic) or (spec.max_length is not None and any(n > spec.max_length for n in dynamic)):
        limit = f"1 to {spec.max_length}" if spec.max_length is not None else "at least 1"
        raise InvalidInput(f"{what} has shape {list(array.shape)}; its dynamic axes take {limit} values")
    if spec.dtype == "float32" and not np.isfinite(array).all():
        raise InvalidInput(f"{what} contains NaN or infinite values")
    if spec.vocab_size is not None and array.size and (array.min() < 0 or array.max() >= spec.vocab_size):
        raise InvalidInput(f"{what} holds ids outside [0, {spec.vocab_size})")


def _dtype_name(value: int) -> str:
    return pb.DataType.Name(value) if value in pb.DataType.values() else str(value)
