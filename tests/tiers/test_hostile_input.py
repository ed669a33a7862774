"""Hostile requests that once came back INTERNAL, froze the device or collided now get a clear status.

Each case reproduces a measured failure: tensors whose shape numpy cannot
hold, a PNG whose header claims 13,380 x 13,380 pixels, a tensor whose size
once froze the event loop for 16 s, request ids shared by two clients,
timeouts that are NaN or not positive, and bytes that are not a protobuf
message at all. Every tier answers each with INVALID_ARGUMENT (or answers it
correctly) and goes on serving.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib

import grpc
import numpy as np
import pytest

from splitexit.samples import LabelledImage
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.tensors import encode
from splitexit.testbed import Testbed

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NUMPY_BREAKERS = {
    "65-dims": pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[1] * 65, raw=b"\0" * 4),
    "too-big": pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[0, 2**63 - 1], raw=b""),
    "reshape": pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[2**40, 2**40, 0], raw=b""),
    "empty-batch": pb.Tensor(dtype=pb.DATA_TYPE_FP32, shape=[0, 1, 28, 28], raw=b""),
}


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (its data is one empty chunk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


async def unary(address: str, service: str, method: str, message: object, timeout: float = 10) -> object:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DeviceStub(channel) if service == "Device" else pb_grpc.TierStub(channel)
        return await getattr(stub, method)(message, timeout=timeout)


def status_of(address: str, service: str, method: str, message: object) -> tuple[grpc.StatusCode, str]:
    try:
        asyncio.run(unary(address, service, method, message))
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def good_image(testbed: Testbed, image: LabelledImage) -> pb.InferResponse:
    return asyncio.run(unary(testbed.device_address, "Device", "Infer", pb.InferRequest(image=image.png)))


@pytest.mark.parametrize("case", NUMPY_BREAKERS, ids=list(NUMPY_BREAKERS))
def test_tensors_numpy_cannot_hold_are_invalid_on_every_tier(
    testbed: Testbed, images: list[LabelledImage], case: str
) -> None:
    tensor = NUMPY_BREAKERS[case]
    calls = [("Device", testbed.device_address, "Infer", pb.InferRequest(tensor=tensor))]
    for tier in ("edge", "cloud"):
        address = testbed.processes[next(t for t in testbed.processes if t.value == tier)].address
        message = pb.ContinueRequest(model="fmnist-cnn", next_block=3 if tier == "edge" else 5, activation=tensor)
        calls.append(("Tier", address, "Continue", message))
    for service, address, method, message in calls:
        code, details = status_of(address, service, method, message)
        assert code == INVALID, (service, address, details)
    assert good_image(testbed, images[0]).label_name


def test_a_png_that_claims_billions_of_pixels_is_refused_unread(testbed: Testbed, images: list[LabelledImage]) -> None:
    bomb = png_claiming(13380, 13380)
    assert len(bomb) < 100
    code, details = status_of(testbed.device_address, "Device", "Infer", pb.InferRequest(image=bomb))
    assert code == INVALID and "pixels" in details
    assert good_image(testbed, images[0]).label_name


def test_a_wrongly_shaped_large_tensor_does_not_hold_up_other_requests(
    testbed: Testbed, images: list[LabelledImage]
) -> None:
    """Once, work proportional to this input ran on the event loop before the shape check: 16 s of freeze."""
    hostile = pb.InferRequest(tensor=encode(np.zeros((1, 100_000, 1, 1), np.float32)))

    async def go() -> tuple[float, list[float]]:
        async def timed(message: pb.InferRequest) -> float:
            started = time.perf_counter()
            try:
                await unary(testbed.device_address, "Device", "Infer", message)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == INVALID and "shape [1, 1, 28, 28]" in exc.details()
            return time.perf_counter() - started

        hostile_s, *good_s = await asyncio.gather(
            timed(hostile), *(timed(pb.InferRequest(image=i.png)) for i in images[:5])
        )
        return hostile_s, good_s

    hostile_s, good_s = asyncio.run(go())
    assert hostile_s < 2.0 and max(good_s) < 2.0, (hostile_s, good_s)


def test_two_clients_may_use_the_same_request_id_at_once(testbed: Testbed, images: list[LabelledImage]) -> None:
    """Ids are the client's own: the link to the edge uses ids of its own, so these never collide."""

    async def go() -> list[pb.InferResponse]:
        async with (
            grpc.aio.insecure_channel(testbed.device_address) as a,
            grpc.aio.insecure_channel(testbed.device_address) as b,
        ):
            requests = [
                pb_grpc.DeviceStub(channel).Infer(
                    pb.InferRequest(request_id="order-1", image=image.png, policy=pb.Plan(threshold=1.0)),
                    timeout=10,
                )
                for image in images[:10]
                for channel in (a, b)
            ]
            return await asyncio.gather(*requests)

    answers = asyncio.run(go())
    assert len(answers) == 20 and all(a.request_id == "order-1" and a.exit_tier == pb.TIER_NAME_CLOUD for a in answers)
    assert all(not a.degraded for a in answers)


@pytest.mark.parametrize("timeout_s", [float("nan"), 0.0, -1.0, float("inf"), 1e9])
def test_timeouts_that_are_not_a_positive_number_of_seconds_are_invalid(
    testbed: Testbed, edge_address: str, manifest: object, timeout_s: float
) -> None:
    activation = encode(np.zeros((1, *manifest.block(3).input.per_sample_shape()), np.float32))  # type: ignore[attr-defined]
    message = pb.ContinueRequest(model="fmnist-cnn", next_block=3, activation=activation, timeout_s=timeout_s)
    code, details = status_of(edge_address, "Tier", "Continue", message)
    assert code == INVALID and "timeout_s" in details
    code, details = status_of(
        testbed.device_address, "Device", "Infer", pb.InferRequest(image=b"x", timeout_s=timeout_s)
    )
    assert code == INVALID and "timeout_s" in details


def test_bytes_that_are_no_protobuf_message_are_invalid_not_internal(testbed: Testbed) -> None:
    async def go(payload: bytes) -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(testbed.device_address) as channel:
            call = channel.unary_unary("/splitexit.v1.Device/Infer")  # no serializers: raw bytes both ways
            try:
                await call(payload, timeout=5)
            except grpc.aio.AioRpcError as exc:
                assert "protobuf" in (exc.details() or "")
                return exc.code()
        return grpc.StatusCode.OK

    assert asyncio.run(go(b"\xff\xff\xff\xff\x0f")) == INVALID
