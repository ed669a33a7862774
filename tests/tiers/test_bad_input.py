"""Bad input gets a clear status and message, and the tiers keep serving."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitexit.client import AsyncClient, request
from splitexit.results import ClientError
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tensors import encode
from splitexit.testbed import Testbed

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def device_call(address: str, message: pb.InferRequest) -> pb.InferResponse:
    async def go() -> pb.InferResponse:
        async with AsyncClient(address) as client:
            return (await client.infer_request(message)).message

    return asyncio.run(go())


def edge_call(address: str, message: pb.ContinueRequest) -> pb.InferResponse:
    async def go() -> pb.InferResponse:
        async with grpc.aio.insecure_channel(address) as channel:
            return await pb_grpc.TierStub(channel).Continue(message, timeout=30)

    return asyncio.run(go())


def assert_status(call, code: grpc.StatusCode, *phrases: str) -> None:
    with pytest.raises((ClientError, grpc.aio.AioRpcError)) as caught:
        call()
    error = caught.value
    actual, details = (error.code, error.message) if isinstance(error, ClientError) else (error.code(), error.details())
    assert actual == code, details
    for phrase in phrases:
        assert phrase in details, details
    assert "Traceback" not in details


@pytest.mark.parametrize(
    ("message", "code", "phrases"),
    [
        (request(b"GIF89a? definitely not pixels"), INVALID, ["not an image"]),
        (request(b""), INVALID, ["empty"]),
        (request(b"\x00" * (50 << 20)), grpc.StatusCode.RESOURCE_EXHAUSTED, ["50.0 MiB", "at most 8.0 MiB"]),
        (pb.InferRequest(model="fmnist-cnn"), INVALID, ["no input"]),
        (
            pb.InferRequest(model="no-such-model", image=b"x"),
            grpc.StatusCode.NOT_FOUND,
            ["no-such-model", "fmnist-cnn"],
        ),
        (pb.InferRequest(tensor=encode(np.zeros((1, 3, 28, 28), np.float32))), INVALID, ["shape [1, 1, 28, 28]"]),
        (
            pb.InferRequest(tensor=pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[1, 1, 28, 28], raw=b"\0" * 7)),
            INVALID,
            ["raw bytes"],
        ),
        (pb.InferRequest(tensor=encode(np.full((1, 1, 28, 28), np.nan, np.float32))), INVALID, ["NaN"]),
        (pb.InferRequest(policy=pb.Plan(threshold=1.5)), INVALID, ["[0, 1]"]),
        (pb.InferRequest(policy=pb.Plan(exit_thresholds=[0.5, 0.5])), INVALID, ["one value per exit"]),
    ],
    ids=[
        "not-an-image",
        "empty",
        "50MB",
        "no-input",
        "unknown-model",
        "wrong-shape",
        "short-raw",
        "nan",
        "bad-threshold",
        "thresholds-count",
    ],
)
def test_device_rejects_bad_requests_then_serves_the_next(
    testbed: Testbed, images: list[LabelledImage], message: pb.InferRequest, code: grpc.StatusCode, phrases: list[str]
) -> None:
    if not message.WhichOneof("input") and message.HasField("policy"):
        message.image = images[0].png  # a good image, a bad policy
    assert_status(lambda: device_call(testbed.device_address, message), code, *phrases)
    assert device_call(testbed.device_address, request(images[0].png)).label_name


def continue_request(activation: pb.Tensor, next_block: int = 3, model: str = "fmnist-cnn") -> pb.ContinueRequest:
    return pb.ContinueRequest(model=model, request_id="edge-test", next_block=next_block, activation=activation)


def test_edge_rejects_wrong_tensors_and_blocks_then_serves_the_next(edge_address: str, manifest: Manifest) -> None:
    shape = [1, *manifest.block(3).input.per_sample_shape()]
    good = encode(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    wrong_dtype = pb.Tensor(dtype=pb.DATA_TYPE_INT64, shape=shape, raw=b"\0" * 8 * int(np.prod(shape)))
    wrong_shape = encode(np.zeros([1, 7, 7, 7], np.float32))
    unknown_dtype = pb.Tensor(dtype=42, shape=shape, raw=good.raw)
    cases = [
        (continue_request(wrong_dtype), INVALID, ["float tensor"]),
        (continue_request(wrong_shape), INVALID, [f"shape {shape}", "[1, 7, 7, 7]"]),
        (continue_request(unknown_dtype), INVALID, ["dtype 42"]),
        (continue_request(good, next_block=6), grpc.StatusCode.OUT_OF_RANGE, ["hosts blocks 1..4", "block 6"]),
        (continue_request(good, model="nope"), grpc.StatusCode.NOT_FOUND, ["'nope'"]),
    ]
    for message, code, phrases in cases:
        assert_status(lambda: edge_call(edge_address, message), code, *phrases)
        assert edge_call(edge_address, continue_request(good)).exit_block >= 3


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("/grpc.health.v1.Health/Check", "unary_unary"),
        ("/grpc.health.v1.Health/Watch", "unary_stream"),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "stream_stream"),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "stream_stream"),
    ],
)
def test_health_and_reflection_refuse_bytes_that_are_no_message(edge_address: str, method: str, kind: str) -> None:
    """gRPC answers UNKNOWN when a request does not parse; the tiers answer INVALID_ARGUMENT, and keep serving."""
    garbage = b"\xff\xff\xff"  # a truncated varint: no message of any type
    with grpc.insecure_channel(edge_address) as channel:
        call = getattr(channel, kind)(method)
        with pytest.raises(grpc.RpcError) as caught:
            answer = call(iter([garbage]) if kind.startswith("stream") else garbage, timeout=5)
            if kind != "unary_unary":
                next(answer)
        assert caught.value.code() is INVALID, caught.value
        assert "not a valid protobuf message" in (caught.value.details() or "")
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
