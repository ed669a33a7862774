"""The wire tensor and the activation codecs, on a real activation's value range."""

from __future__ import annotations

import numpy as np
import pytest

from splitexit.shared.errors import InvalidInput
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tensors import decode, encode


@pytest.fixture
def activation() -> np.ndarray:
    """ReLU-like values with the 16x28x28 shape of block 1's output."""
    return np.maximum(np.random.default_rng(0).standard_normal((1, 16, 28, 28)), 0).astype(np.float32) * 3


def test_fp32_round_trip_is_exact_and_little_endian(activation: np.ndarray) -> None:
    tensor = encode(activation, "fp32")
    assert tensor.dtype == pb.DATA_TYPE_FP32 and list(tensor.shape) == [1, 16, 28, 28]
    assert tensor.raw == activation.astype("<f4").tobytes() and len(tensor.raw) == 4 * activation.size
    np.testing.assert_array_equal(decode(tensor), activation)


@pytest.mark.parametrize(("codec", "itemsize", "max_error"), [("fp16", 2, 2e-3), ("int8", 1, 0.5 / 255)])
def test_lossy_codecs_shrink_the_bytes_within_their_error(
    activation: np.ndarray, codec: str, itemsize: int, max_error: float
) -> None:
    tensor = encode(activation, codec)
    assert len(tensor.raw) == itemsize * activation.size
    value_range = float(activation.max() - activation.min())
    error = np.abs(decode(tensor) - activation).max()
    assert error <= max_error * max(value_range, 1.0) + 1e-6, error
    assert decode(tensor).dtype == np.float32


@pytest.mark.parametrize("shape", [(1, 16, 28, 28), (1, 37, 384)])
def test_int8_per_channel_errs_at_most_half_a_step_of_each_channel(shape: tuple[int, ...]) -> None:
    """Channels (tokens) whose ranges differ 1000-fold: each keeps its own step, so small ones stay precise."""
    rng = np.random.default_rng(1)
    axis = 1
    spread = np.logspace(-3, 0, shape[axis]).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    values = (rng.standard_normal(shape) * spread).astype(np.float32)
    tensor = encode(values, "int8-channel")
    assert len(tensor.raw) == values.size and tensor.quantization.axis == axis
    others = tuple(a for a in range(len(shape)) if a != axis)
    ranges = np.maximum(values.max(axis=others), 0) - np.minimum(values.min(axis=others), 0)
    errors = np.abs(decode(tensor) - values).max(axis=others)
    assert (errors <= 0.5 * ranges / 255 + 1e-7).all()
    per_tensor_error = np.abs(decode(encode(values, "int8")) - values).max(axis=others)
    assert errors[0] < per_tensor_error[0] / 100  # the smallest channel: far finer than one scale for all


def test_int8_of_a_constant_tensor_decodes_to_it() -> None:
    constant = np.full((1, 4), 2.5, np.float32)
    np.testing.assert_allclose(decode(encode(constant, "int8")), constant, atol=2.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    ("tensor", "phrase"),
    [
        (pb.Tensor(dtype=pb.DATA_TYPE_UNSPECIFIED, shape=[1], raw=b"\0" * 4), "not supported"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[-1, 4], raw=b""), r"every dimension and the total must lie in \[0,"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[2, 2], raw=b"\0" * 15), "needs 16 raw bytes, got 15"),
        (pb.Tensor(dtype=pb.DATA_TYPE_INT8, shape=[2], raw=b"\0\0"), "quantization"),
        (
            pb.Tensor(
                dtype=pb.DATA_TYPE_INT8, shape=[2], raw=b"\0\0", quantization=pb.Quantization(scale=float("nan"))
            ),
            "finite",
        ),
        (
            pb.Tensor(
                dtype=pb.DATA_TYPE_INT8,
                shape=[1, 2],
                raw=b"\0\0",
                quantization=pb.Quantization(scales=[1.0], zero_points=[0], axis=1),
            ),
            "one scale and one zero point per channel, got 1 and 1",
        ),
        (
            pb.Tensor(
                dtype=pb.DATA_TYPE_INT8,
                shape=[1, 2],
                raw=b"\0\0",
                quantization=pb.Quantization(scales=[1.0, 1.0], zero_points=[0, 0], axis=5),
            ),
            "along axis 5",
        ),
        (
            pb.Tensor(
                dtype=pb.DATA_TYPE_INT8,
                shape=[1, 2],
                raw=b"\0\0",
                quantization=pb.Quantization(scales=[1.0, 0.0], zero_points=[0, 0], axis=1),
            ),
            "positive and finite",
        ),
        (pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[1 << 20, 1 << 20], raw=b""), "every dimension and the total"),
        # what once reached numpy and came back INTERNAL:
        (pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[1] * 65, raw=b"\0" * 4), "65 dimensions; at most 8"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[0, 2**63 - 1], raw=b""), "every dimension and the total"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[2**40, 2**40, 0], raw=b""), "every dimension and the total"),
    ],
)
def test_malformed_tensors_are_invalid_input(tensor: pb.Tensor, phrase: str) -> None:
    with pytest.raises(InvalidInput, match=phrase):
        decode(tensor)
