"""Serving a bidirectional stream of requests: many in flight, answers in completion order.

Both ``Device.InferStream`` and ``Tier.ContinueStream`` are served by
:func:`serve_stream`: it reads requests while earlier ones are still being
answered (at most ``concurrency`` at once), and sends each answer, or the error
of that one request as a ``StreamError``, as soon as it is ready. A bad request
never ends the stream; clients match answers to requests by ``request_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from splitexit.shared.errors import as_serving_error
from splitexit.shared.proto import splitexit_pb2 as pb


class Identified(Protocol):
    request_id: str


Request = TypeVar("Request", bound=Identified)


async def serve_stream(
    requests: AsyncIterator[Request],
    handle: Callable[[Request], Awaitable[pb.InferResponse]],
    concurrency: int,
    where: str,
) -> AsyncIterator[pb.StreamResponse]:
    """Answer every request of ``requests`` with ``handle``, ``concurrency`` at a time."""
    answers: asyncio.Queue[pb.StreamResponse | None] = asyncio.Queue()
    slots = asyncio.Semaphore(concurrency)
    in_flight: set[asyncio.Task[None]] = set()

    async def answer_one(request: Request) -> None:
        try:
            answers.put_nowait(pb.StreamResponse(response=await handle(request)))
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the stream
            error = as_serving_error(exc, where)
            answers.put_nowait(
                pb.StreamResponse(
                    error=pb.StreamError(request_id=request.request_id, code=error.code.value[0], message=error.message)
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
