"""numpy arrays <-> the wire ``Tensor`` (raw little-endian bytes), and the activation codecs.

An activation leaves a tier encoded by the link's codec and arrives back as
float32, whatever the codec:

* ``fp32``: exact, 4 bytes per value;
* ``fp16``: half the bytes, ~1e-3 relative error;
* ``int8``: a quarter of the bytes, affine per tensor (``real = scale * (q - zero_point)``),
  error at most half a step of (max - min) / 255 over the whole tensor;
* ``int8-channel``: the same with one scale and zero point per slice along
  axis 1: per channel of an image activation ``[N, C, H, W]``, per token of a
  text one ``[N, T, H]``, so a slice of small values keeps its own fine step;
  a few bytes more per slice.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import TensorSpec
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.schema import json_name

Codec = Literal["fp32", "fp16", "int8", "int8-channel"]
CODECS: tuple[Codec, ...] = ("fp32", "fp16", "int8", "int8-channel")

_NUMPY_DTYPES: dict[int, np.dtype] = {
    pb.DATA_TYPE_FP32: np.dtype("<f4"),
    pb.DATA_TYPE_FP16: np.dtype("<f2"),
    pb.DATA_TYPE_INT8: np.dtype("i1"),
    pb.DATA_TYPE_INT64: np.dtype("<i8"),
    pb.DATA_TYPE_UINT8: np.dtype("u1"),
}
FLOAT_DTYPES = (pb.DATA_TYPE_FP32, pb.DATA_TYPE_FP16, pb.DATA_TYPE_INT8)  # what decodes to float32
MAX_ELEMENTS = 1 << 26  # 64 Mi values: far above any activation, well below memory trouble
MAX_DIMS = 8


def encode(array: np.ndarray, codec: Codec = "fp32") -> pb.Tensor:
    """A float array as a wire tensor, compressed by ``codec``."""
    shape = list(array.shape)
    if codec == "fp32":
        return pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=shape, raw=array.astype("<f4").tobytes())
    if codec == "fp16":
        return pb.Tensor(dtype=pb.DATA_TYPE_FP16, shape=shape, raw=array.astype("<f2").tobytes())
    if codec == "int8":
        quantized, scale, zero_point = _quantize(array, axes=None)
        quantization = pb.Quantization(scale=scale.item(), zero_point=zero_point.item())
    else:
        axis = 1  # an image's channels, a text's tokens
        others = tuple(a for a in range(array.ndim) if a != axis)
        quantized, scales, zero_points = _quantize(array, axes=others)
        quantization = pb.Quantization(
            scales=scales.reshape(-1).tolist(), zero_points=zero_points.reshape(-1).tolist(), axis=axis
        )
    return pb.Tensor(dtype=pb.DATA_TYPE_INT8, shape=shape, raw=quantized.tobytes(), quantization=quantization)


def _quantize(array: np.ndarray, axes: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine int8 of ``array`` with one (scale, zero point) per slice left after reducing ``axes`` (all: None).

    The range always includes 0, so zeros (padding, ReLU outputs) stay exact.
    """
    low = np.minimum(array.min(axis=axes, keepdims=True, initial=0.0), 0.0).astype(np.float64)
    high = np.maximum(array.max(axis=axes, keepdims=True, initial=0.0), 0.0).astype(np.float64)
    scale = (high - low) / 255.0
    scale[scale == 0] = 1.0
    zero_point = np.round(-128 - low / scale)
    quantized = np.clip(np.round(array / scale) + zero_point, -128, 127).astype("i1")
    return quantized, scale.astype(np.float32), zero_point.astype(np.int32)


def decode(
    tensor: pb.Tensor, spec: TensorSpec | None = None, what: str = "the tensor", rows: int = 1, values: bool = True
) -> np.ndarray:
    """A wire tensor as a numpy array (float32 for every float codec), checked before any work on its values.

    First :func:`check_wire`, then the values are converted and checked
    (:func:`check_values`; ``values`` False leaves that to the caller).
    """
    dtype = check_wire(tensor, spec, what, rows)
    array = _converted(np.frombuffer(tensor.raw, dtype=dtype).reshape(tuple(tensor.shape)), tensor)
    if spec is not None and values:
        check_values(array, spec, what)
    return array


def check_wire(tensor: pb.Tensor, spec: TensorSpec | None = None, what: str = "the tensor", rows: int = 1) -> np.dtype:
    """Raise :class:`InvalidInput` unless ``tensor`` is well formed, and (with ``spec``) ``rows`` samples of what
    ``spec`` expects; its raw bytes' numpy dtype. No value is read.

    The dtype, rank, every dimension, the byte count and an INT8 tensor's
    quantization are checked first, then the dtype family and shape the receiver expects.
    """
    dtype = _NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise InvalidInput(f"{what}: dtype {_dtype_name(tensor.dtype)} is not supported")
    shape = tuple(tensor.shape)
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"{what} has {len(shape)} dimensions; at most {MAX_DIMS} are accepted")
    count = math.prod(shape)
    if min(shape, default=0) < 0 or max(shape, default=0) > MAX_ELEMENTS or count > MAX_ELEMENTS:
        raise InvalidInput(
            f"{what} has shape {_shape_text(shape)}; every dimension and the total must lie in [0, {MAX_ELEMENTS:,}]"
        )
    if len(tensor.raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"{what} of shape {_shape_text(shape)} and dtype {_dtype_name(tensor.dtype)} needs "
            f"{count * dtype.itemsize:,} raw bytes, got {len(tensor.raw):,}"
        )
    if tensor.dtype == pb.DATA_TYPE_INT8:
        _check_quantization(tensor, shape, what)
    if spec is not None:
        check_shape(shape, np.float32 if tensor.dtype in FLOAT_DTYPES else dtype, spec, what, rows)
    return dtype


def _check_quantization(tensor: pb.Tensor, shape: tuple[int, ...], what: str) -> None:
    """Raise :class:`InvalidInput` unless an INT8 tensor's scales are positive and finite, one per channel if per
    channel."""
    q = tensor.quantization
    if not tensor.HasField("quantization"):
        raise InvalidInput(f"{what}: an INT8 tensor needs quantization (a scale and zero point)")
    if not q.scales:
        scales = [q.scale]
    elif q.axis >= len(shape) or len(q.scales) != shape[q.axis] or len(q.zero_points) != len(q.scales):
        raise InvalidInput(
            f"{what}: per-channel quantization along axis {q.axis} of shape {_shape_text(shape)} needs one scale "
            f"and one zero point per channel, got {len(q.scales)} and {len(q.zero_points)}"
        )
    else:
        scales = q.scales
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise InvalidInput(f"{what}: an INT8 tensor's quantization scales must be positive and finite")


def _converted(values: np.ndarray, tensor: pb.Tensor) -> np.ndarray:
    if tensor.dtype == pb.DATA_TYPE_INT8:
        q = tensor.quantization
        if not q.scales:
            return (values.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)
        along = [1] * values.ndim
        along[q.axis] = -1
        scales = np.asarray(q.scales, np.float32).reshape(along)
        zero_points = np.asarray(q.zero_points, np.float32).reshape(along)
        return (values.astype(np.float32) - zero_points) * scales
    if tensor.dtype in FLOAT_DTYPES:
        return values.astype(np.float32, copy=False)  # FP32 stays a view of the message's bytes
    return values


def check_shape(shape: tuple[int, ...], dtype: np.dtype | type, spec: TensorSpec, what: str, rows: int = 1) -> None:
    """Raise :class:`InvalidInput` unless ``shape`` and ``dtype`` are ``rows`` samples of what ``spec`` expects.

    Float inputs (images, activations) arrive as float32 whatever their codec; a
    dynamic axis takes 1 to ``spec.max_length`` values. Costs nothing: no value is read.
    """
    if np.dtype(dtype) != np.dtype(spec.dtype):
        kind = (
            "a float tensor (FP32, FP16 or quantized INT8)"
            if spec.dtype == "float32"
            else "an INT64 tensor of token ids"
        )
        raise InvalidInput(f"{what} must be {kind}, got {np.dtype(dtype)}")
    expected = [rows, *spec.per_sample_shape()]
    if len(shape) != len(expected) or any(d is not None and n != d for n, d in zip(shape, expected)):
        wanted = ", ".join("N" if d is None else str(d) for d in expected)
        raise InvalidInput(f"{what} must have shape [{wanted}], got {_shape_text(shape)}")
    dynamic = [n for n, d in zip(shape, expected) if d is None]
    if any(n < 1 for n in dynamic) or (spec.max_length is not None and any(n > spec.max_length for n in dynamic)):
        limit = f"1 to {spec.max_length}" if spec.max_length is not None else "at least 1"
        raise InvalidInput(f"{what} has shape {_shape_text(shape)}; its dynamic axes take {limit} values")


def check_values(array: np.ndarray, spec: TensorSpec, what: str) -> None:
    """Raise :class:`InvalidInput` unless float values are finite and token ids lie in ``[0, spec.vocab_size)``."""
    if spec.dtype == "float32" and not np.isfinite(array).all():
        raise InvalidInput(f"{what} contains NaN or infinite values")
    if spec.vocab_size is not None and array.size and (array.min() < 0 or array.max() >= spec.vocab_size):
        raise InvalidInput(f"{what} holds ids outside [0, {spec.vocab_size})")


def _shape_text(shape: tuple[int, ...]) -> str:
    """A shape for a message, shortened if it is long."""
    return str(list(shape)) if len(shape) <= MAX_DIMS else f"[{', '.join(map(str, shape[:MAX_DIMS]))}, ...]"


def _dtype_name(value: int) -> str:
    return json_name(pb.DataType.DESCRIPTOR, value)
