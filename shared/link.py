"""The link from one tier to the next: one persistent ``ContinueStream``, many requests on it.

Opening a stream once and multiplexing requests on it by ``request_id`` costs
about a third of a unary call per message (docs/architecture.md). Answers come
back in any order; a reader task hands each to the caller waiting for it. If
the stream breaks (the next tier restarted), every waiting caller gets
UNAVAILABLE and the next call opens a fresh stream.
"""

from __future__ import annotations

import asyncio

import grpc

from splitexit.shared.errors import (
    DeadlineExceeded,
    InvalidInput,
    NextTierUnavailable,
    RemoteError,
    ServingError,
    status_from_number,
)
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC options raising both message limits (the receive default is 4 MB)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class TierLink:
    """A client of the next tier's ``Tier`` service, shared by every request of this tier."""

    def __init__(self, address: str, max_message_bytes: int) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=channel_options(max_message_bytes))
        self._stub = pb_grpc.TierStub(self._channel)
        self._stream: grpc.aio.StreamStreamCall | None = None
        self._pending: dict[str, asyncio.Future[pb.InferResponse]] = {}
        self._write_lock = asyncio.Lock()
        self._readers: set[asyncio.Task[None]] = set()

    async def call(self, request: pb.ContinueRequest, timeout_s: float | None) -> pb.InferResponse:
        """Send one request on the stream and wait for its answer."""
        if request.request_id in self._pending:
            raise InvalidInput(
                f"request_id {request.request_id!r} is already in flight; concurrent requests need distinct ids"
            )
        answer = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = answer
        try:
            async with self._write_lock:
                await self._open_stream().write(request)
            return await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer from the next tier at {self.address} within {timeout_s:.3f} s") from None
        except grpc.aio.AioRpcError as exc:
            raise NextTierUnavailable(f"the next tier at {self.address} is unreachable: {exc.details()}") from None
        finally:
            self._pending.pop(request.request_id, None)

    def _open_stream(self) -> grpc.aio.StreamStreamCall:
        if self._stream is None or self._stream.done():
            self._stream = self._stub.ContinueStream()
            reader = asyncio.create_task(self._read_answers(self._stream))
            self._readers.add(reader)
            reader.add_done_callback(self._readers.discard)
        return self._stream

    async def _read_answers(self, stream: grpc.aio.StreamStreamCall) -> None:
        failure: ServingError = NextTierUnavailable(f"the next tier at {self.address} closed the stream")
        try:
            async for message in stream:
                self._deliver(message)
        except grpc.aio.AioRpcError as exc:
            failure = NextTierUnavailable(f"the link to the next tier at {self.address} failed: {exc.details()}")
        finally:
            if self._stream is stream:
                self._stream = None
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(failure)

    def _deliver(self, message: pb.StreamResponse) -> None:
        if message.HasField("error"):
            request_id = message.error.request_id
            outcome: pb.InferResponse | ServingError = RemoteError(
                status_from_number(message.error.code), message.error.message
            )
        else:
            request_id, outcome = message.response.request_id, message.response
        waiting = self._pending.get(request_id)
        if waiting is None or waiting.done():
            return  # its caller gave up (deadline) before the answer came
        if isinstance(outcome, ServingError):
            waiting.set_exception(outcome)
        else:
            waiting.set_result(outcome)

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        await self._channel.close()

