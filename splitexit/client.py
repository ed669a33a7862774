"""A small asyncio client for the device's gRPC API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitexit.policies.plan import override
from splitexit.shared.link import channel_options
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc

MAX_MESSAGE_BYTES = 64 << 20


class DeviceClient:
    """``async with DeviceClient("127.0.0.1:50051") as client: await client.infer(...)``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=channel_options(MAX_MESSAGE_BYTES))
        self.stub = pb_grpc.DeviceStub(self._channel)

    async def __aenter__(self) -> DeviceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close()

    async def infer(
        self,
        image: bytes,
        model: str = "",
        threshold: float | None = None,
        timeout_s: float | None = 30.0,
    ) -> pb.InferResponse:
        """Classify one encoded image (PNG, JPEG, ...)."""
        return await self.stub.Infer(request(image, model, threshold), timeout=timeout_s)

    async def infer_many(self, requests: Iterable[pb.InferRequest]) -> AsyncIterator[pb.StreamResponse]:
        """Send requests on one ``InferStream``; answers arrive as they complete."""
        async for answer in self.stub.InferStream(iter(requests)):
            yield answer


def request(
    image: bytes, model: str = "", threshold: float | None = None, request_id: str = "", policy: str = ""
) -> pb.InferRequest:
    """An image request; ``threshold`` (α at every exit) or ``policy`` (a device policy's name) pick the plan."""
    return pb.InferRequest(model=model, request_id=request_id, image=image, policy=override(threshold, policy))


def text_request(
    text: str,
    model: str = "",
    threshold: float | None = None,
    request_id: str = "",
    truncate: bool = False,
    policy: str = "",
) -> pb.InferRequest:
    """A text request (UTF-8 encoded here); the rest as :func:`request`."""
    return pb.InferRequest(
        model=model, request_id=request_id, text=text.encode("utf-8"), policy=override(threshold, policy), truncate=truncate
    )


async def is_serving(address: str, timeout_s: float = 1.0) -> bool:
    """True once the server at ``address`` answers its health check with SERVING."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING
