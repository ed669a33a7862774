"""Hypothesis strategies for hostile requests: well-formed protobuf messages with contents meant to break a tier.

Each strategy mixes plausible values (the model's real names, the shapes a
block expects, a real PNG) with hostile ones (every dtype number, ranks up to
70, dimensions up to 2^63, raw bytes that do not match, NaN and infinities,
ids and names thousands of characters long, truncated and corrupted images,
a PNG that claims 13,380 x 13,380 pixels, invalid UTF-8), so that both the
checks and the code behind them are reached.
"""

from __future__ import annotations

import struct
import zlib

from grpc_health.v1 import health_pb2
from hypothesis import strategies as st

from bench.proto_strategies import messages
from splitexit.shared.proto import splitexit_pb2 as pb

MODELS = ["", "fmnist-cnn", "minilm-sentiment", "minilm-bbc-topic", "no-such-model", "x" * 5000]
POLICIES = ["", "thresholds", "splitee", "dimee", "dimee-router", "final-layer", "nope", "\x00" * 10]
IMAGE_INPUT, TEXT_INPUT = [1, 1, 28, 28], [1, 12]  # block 1's inputs, batch 1: fmnist-cnn's image, a text's token ids
HUGE = [0, 1, 2, 3, 27, 28, 384, 2**16, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e-12, 0.5, 1.0, 1.5, 1e9, 1e300]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def floats() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(ODD_FLOATS), st.floats(allow_nan=True, allow_infinity=True))


def shapes(expected: list[int]) -> st.SearchStrategy[list[int]]:
    """The expected shape, near misses of it, or anything up to rank 70 with dimensions up to 2^63 − 1."""
    dims = st.one_of(st.sampled_from(HUGE), st.integers(0, 64))
    return st.one_of(
        st.just(expected),
        st.lists(dims, min_size=0, max_size=6),
        st.lists(st.sampled_from([0, 1]), min_size=60, max_size=70),
        st.builds(lambda i, d: [*expected[:i], d, *expected[i + 1 :]], st.integers(0, max(len(expected) - 1, 0)), dims),
    )


def tensors(expected: list[int]) -> st.SearchStrategy[pb.Tensor]:
    """Tensors of any dtype number and shape; raw bytes that fit the shape, or not."""

    def build(dtype: int, shape: list[int], raw: bytes, fitting: bool, scale: float) -> pb.Tensor:
        itemsize = {
            pb.DATA_TYPE_FP32: 4,
            pb.DATA_TYPE_FP16: 2,
            pb.DATA_TYPE_INT8: 1,
            pb.DATA_TYPE_INT64: 8,
            pb.DATA_TYPE_UINT8: 1,
        }.get(dtype, 4)
        count = 1
        for dim in shape:
            count *= dim
        if fitting and 0 <= count * itemsize <= 1 << 20:
            raw = (
                (raw * (count * itemsize // max(len(raw), 1) + 1))[: count * itemsize]
                if raw
                else bytes(count * itemsize)
            )
        quantization = pb.Quantization(scale=scale, zero_point=3) if dtype == pb.DATA_TYPE_INT8 else None
        return pb.Tensor(dtype=dtype, shape=shape, raw=raw, quantization=quantization)

    dtypes = st.one_of(
        st.sampled_from(
            [pb.DATA_TYPE_FP32, pb.DATA_TYPE_FP16, pb.DATA_TYPE_INT8, pb.DATA_TYPE_INT64, pb.DATA_TYPE_UINT8]
        ),
        st.integers(0, 2**31 - 1),
    )
    return st.builds(build, dtypes, shapes(expected), st.binary(max_size=512), st.booleans(), floats())


def images(sample_png: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, a real PNG cut short or with bytes flipped, and pixel bombs."""
    cut = st.integers(0, len(sample_png)).map(lambda n: sample_png[:n])
    flipped = st.tuples(st.integers(0, len(sample_png) - 1), st.integers(1, 255)).map(
        lambda f: sample_png[: f[0]] + bytes([sample_png[f[0]] ^ f[1]]) + sample_png[f[0] + 1 :]
    )
    bombs = st.sampled_from([png_claiming(13380, 13380), png_claiming(1, 2**31 - 1), png_claiming(0, 0)])
    return st.one_of(st.binary(max_size=2048), cut, flipped, bombs, st.just(sample_png))


def texts() -> st.SearchStrategy[bytes]:
    """Any bytes (invalid UTF-8 among them) or any text, UTF-8 encoded."""
    return st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode))


def overrides() -> st.SearchStrategy[pb.Plan]:
    def build(threshold: float | None, thresholds: list[float], device: int, edge: int, name: str) -> pb.Plan:
        return pb.Plan(
            threshold=threshold, exit_thresholds=thresholds, device_last_block=device, edge_last_block=edge, name=name
        )

    blocks = st.sampled_from([0, 1, 2, 3, 6, 7, 2**32 - 1])
    names = st.one_of(st.sampled_from(POLICIES), st.text(max_size=40))
    thresholds = st.one_of(st.just([]), st.lists(floats(), min_size=1, max_size=8))
    return st.builds(build, st.one_of(st.none(), floats()), thresholds, blocks, blocks, names)


def request_ids() -> st.SearchStrategy[str]:
    return st.one_of(st.just(""), st.text(max_size=40), st.just("r" * 10_000))


def timeouts() -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.sampled_from([0.5, 2.0]), floats())


def infer_requests(sample_png: bytes) -> st.SearchStrategy[pb.InferRequest]:
    """``Device.Infer`` requests: an image, a text, a tensor or no input, with hostile fields around it."""

    def build(
        model: str,
        request_id: str,
        source: tuple[str, object],
        override: pb.Plan | None,
        top_k: int,
        truncate: bool,
        timeout_s: float | None,
        forbid: bool,
    ) -> pb.InferRequest:
        message = pb.InferRequest(
            model=model,
            request_id=request_id,
            policy=override,
            top_k=top_k,
            truncate=truncate,
            timeout_s=timeout_s,
            forbid_degraded=forbid,
        )
        if source[0] == "tensor":
            message.tensor.CopyFrom(source[1])  # type: ignore[arg-type]
        elif source[0] in ("image", "text"):
            setattr(message, source[0], source[1])
        return message

    sources = st.one_of(
        st.tuples(st.just("image"), images(sample_png)),
        st.tuples(st.just("text"), texts()),
        st.tuples(st.just("tensor"), st.one_of(tensors(IMAGE_INPUT), tensors(TEXT_INPUT))),
        st.tuples(st.just("none"), st.none()),
    )
    return st.builds(
        build,
        st.sampled_from(MODELS),
        request_ids(),
        sources,
        st.one_of(st.none(), overrides()),
        st.sampled_from([0, 1, 3, 10, 2**32 - 1]),
        st.booleans(),
        timeouts(),
        st.booleans(),
    )


def continue_requests(activations: dict[str, list[int]]) -> st.SearchStrategy[pb.ContinueRequest]:
    """``Tier.Continue`` requests; ``activations`` maps a resume block (as text) to the activation shape it takes."""

    def build(
        model: str,
        request_id: str,
        block: int,
        tensor: pb.Tensor,
        override: pb.Plan,
        top_k: int,
        timeout_s: float | None,
        forbid: bool,
    ) -> pb.ContinueRequest:
        return pb.ContinueRequest(
            model=model,
            request_id=request_id,
            next_block=block,
            activation=tensor,
            policy=override,
            top_k=top_k,
            timeout_s=timeout_s,
            forbid_degraded=forbid,
        )

    shaped = st.sampled_from(sorted(activations)).flatmap(
        lambda block: st.tuples(st.just(int(block)), tensors(activations[block]))
    )
    blocks = st.one_of(shaped, st.tuples(st.sampled_from([0, 1, 7, 2**32 - 1]), tensors([1, 16, 14, 14])))
    return blocks.flatmap(
        lambda pair: st.builds(
            build,
            st.sampled_from(MODELS),
            request_ids(),
            st.just(pair[0]),
            st.just(pair[1]),
            overrides(),
            st.sampled_from([0, 5, 2**32 - 1]),
            timeouts(),
            st.booleans(),
        )
    )


def policy_state_requests() -> st.SearchStrategy[pb.PolicyStateRequest]:
    return st.builds(
        lambda model, policy: pb.PolicyStateRequest(model=model, policy=policy),
        st.sampled_from(MODELS),
        st.one_of(st.sampled_from(POLICIES), st.text(max_size=100)),
    )


def model_metadata_requests() -> st.SearchStrategy[pb.ModelMetadataRequest]:
    return messages(
        pb.ModelMetadataRequest, by_field={"model": st.one_of(st.sampled_from(MODELS), st.text(max_size=100))}
    )


def health_requests() -> st.SearchStrategy[health_pb2.HealthCheckRequest]:
    services = st.one_of(st.sampled_from(["", "splitexit.v1.Device", "splitexit.v1.Tier"]), st.text(max_size=64))
    return messages(health_pb2.HealthCheckRequest, by_field={"service": services})
