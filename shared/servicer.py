"""gRPC glue shared by the tiers: errors to status codes, streams, the ``Tier`` service.

A handler raises :class:`ServingError` for anything the client got wrong or
the next tier reported; :func:`answer_unary` turns it into a status with its
message, and :func:`answer_stream` into a :class:`StreamError` message that
leaves the stream open. Anything else is logged here and reaches the client as
INTERNAL with one line, never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from shared.errors import ServingError
from shared.node import Sample, TierNode
from shared.proto import splitexit_pb2 as pb
from shared.proto import splitexit_pb2_grpc as pb_grpc
from shared.tensors import decode

log = logging.getLogger(__name__)
Request = TypeVar("Request")
Handler = Callable[[], Awaitable[pb.InferResponse]]


def _as_serving_error(exc: Exception, where: str) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    log.exception("unexpected error in the %s", where)
    return ServingError(f"internal error in the {where} ({type(exc).__name__}); see its log")


async def answer_unary(handle: Handler, context: grpc.aio.ServicerContext, where: str) -> pb.InferResponse:
    """Await ``handle()``; on failure abort the call with the error's code and message."""
    try:
        return await handle()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status
        error = _as_serving_error(exc, where)
        await context.abort(error.code, error.message)
        raise  # unreachable: abort raises


async def answer_stream(
    requests: AsyncIterator[Request],
    handler_for: Callable[[Request], Handler],
    request_id_of: Callable[[Request], str],
    concurrency: int,
    where: str,
) -> AsyncIterator[pb.StreamResponse]:
    """Serve a request stream concurrently; answers (or errors) leave in completion order."""
    answers: asyncio.Queue[pb.StreamResponse | None] = asyncio.Queue()
    slots = asyncio.Semaphore(concurrency)
    in_flight: set[asyncio.Task[None]] = set()

    async def answer_one(request: Request) -> None:
        try:
            answers.put_nowait(pb.StreamResponse(response=await handler_for(request)()))
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the stream
            error = _as_serving_error(exc, where)
            answers.put_nowait(
                pb.StreamResponse(
                    error=pb.StreamError(
                        request_id=request_id_of(request), code=error.code.value[0], message=error.message
                    )
                )
            )
        finally:
            slots.release()

    async def read_requests() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                task = asyncio.create_task(answer_one(request))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight)
        finally:
            answers.put_nowait(None)

    reader = asyncio.create_task(read_requests())
    try:
        while (answer := await answers.get()) is not None:
            yield answer
    finally:
        reader.cancel()
        for task in list(in_flight):
            task.cancel()


class TierServicer(pb_grpc.TierServicer):
    """``Tier.Continue``: resume a sample sent by the previous tier (edge and cloud)."""

    STREAM_CONCURRENCY = 256

    def __init__(self, node: TierNode) -> None:
        self.node = node
        self.where = node.tier.value

    def _handler(self, request: pb.ContinueRequest, timeout_s: float | None, method: str) -> Handler:
        received_at = time.perf_counter()

        async def handle() -> pb.InferResponse:
            x = decode(request.activation)
            sample = Sample(
                model=request.model,
                request_id=request.request_id,
                start_block=request.next_block,
                x=x,
                plan=request.policy,
                top_k=request.top_k,
                received_at=received_at,
                timeout_s=timeout_s,
                codec_s=time.perf_counter() - received_at,
            )
            return await self.node.process(sample)

        return self.node.metrics.tracked(method, request.model, handle)

    async def Continue(self, request: pb.ContinueRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        return await answer_unary(self._handler(request, context.time_remaining(), "Continue"), context, self.where)

    async def ContinueStream(
        self, request_iterator: AsyncIterator[pb.ContinueRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for answer in answer_stream(
            request_iterator,
            lambda request: self._handler(request, request.timeout_s or None, "ContinueStream"),
            lambda request: request.request_id,
            self.STREAM_CONCURRENCY,
            self.where,
        ):
            yield answer
