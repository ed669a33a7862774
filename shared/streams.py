"""Serving a bidirectional stream of requests: many in flight, answers in completion order, bounded.

``Device.InferStream``, ``Tier.ContinueStream`` and ``Tier.ContinueBatches``
are served by :func:`serve_stream`. It reads requests while earlier ones are
still being answered and hands over each answer, or the error of that one
request as a ``StreamError``, as soon as it is ready: everything ready at once
comes as one list, which ``ContinueBatches`` sends as one message. A bad
request never ends the stream; clients match answers to requests by ``request_id``.

Every request goes through the tier's :class:`~splitexit.shared.pipeline.Pipeline`
(metrics, validation, admission, deadline, error mapping), which returns its answer
or its error; a group of requests read as one (a list: a link message's samples of
one model) goes through it together (``Pipeline.run_many``, the route's group handler)
and its answers are handed over chunk by chunk as they are ready. Bounded: at most
``limit`` requests of one stream are being answered (the pipeline's admission); one
more is answered RESOURCE_EXHAUSTED at once. If the client does not read its answers
(``2 x limit`` messages wait unsent), reading stops until it does, so memory stays
bounded whatever the client does.

Draining: once the tier's ``drain.closing`` is set, the stream reads no more
requests, answers every request it read, then ends with UNAVAILABLE, so the
client knows that the requests it got no answer for were not accepted and can
be sent again. (The drain waits for open streams: :mod:`splitexit.shared.interceptors` counts them.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from splitexit.shared.admission import InFlightLimit
from splitexit.shared.errors import ServingError, ShuttingDown
from splitexit.shared.lifecycle import Drain
from splitexit.shared.pipeline import GroupHandler, Handler, Pipeline, Request
from splitexit.shared.proto import splitexit_pb2 as pb


@dataclass(frozen=True, kw_only=True)
class StreamRoute:
    """Where a stream's requests go: the tier's pipeline, under the stream's method name, to its handler."""

    pipeline: Pipeline
    method: str  # the metrics' method label: InferStream, ContinueStream, ContinueBatches
    handler: Handler[pb.InferResponse]
    group_handler: GroupHandler[pb.InferResponse] | None = None  # for groups of requests read as one (a link's)
    limit: int  # requests of one stream being answered at once
    setting: str  # the setting that raises ``limit``, for messages


async def serve_stream(
    requests: AsyncIterator[Request | list[Request]], route: StreamRoute, drain: Drain
) -> AsyncIterator[list[pb.StreamResponse]]:
    """Answer every request of ``requests`` through ``route``, ``route.limit`` at a time; yields what is ready."""
    where = route.pipeline.where
    session = _StreamSession(requests, route, InFlightLimit(route.limit, "this stream", route.setting))
    async for answer in session.answers(drain.closing):
        yield answer
    if drain.closing.is_set():
        raise ShuttingDown(
            f"the {where} is shutting down: requests on this stream without an answer were not accepted; send them "
            "again"
        )


_READ_DONE, _DRAIN = object(), object()  # markers in the queue of a session's answers


class _StreamSession:
    """One stream's requests in flight and the answers waiting to be sent."""

    def __init__(
        self, requests: AsyncIterator[Request | list[Request]], route: StreamRoute, limit: InFlightLimit
    ) -> None:
        self._requests, self._route, self._limit = requests, route, limit
        self._ready: asyncio.Queue[pb.StreamResponse | object] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0  # requests being answered (or refused)
        self._held = 0  # requests being answered plus messages not yet sent
        self._room = asyncio.Event()
        self._room.set()

    async def answers(self, closing: asyncio.Event) -> AsyncIterator[list[pb.StreamResponse]]:
        """Every answer ready at a time, until every accepted request is answered and no more are coming."""
        reader = asyncio.create_task(self._read())
        watcher = asyncio.create_task(self._watch(closing))
        reading = True
        try:
            while reading or self._running or not self._ready.empty():
                items = [await self._ready.get()]
                while not self._ready.empty():
                    items.append(self._ready.get_nowait())
                if _READ_DONE in items or _DRAIN in items:
                    reader.cancel()
                    reading = False
                ready = [item for item in items if item is not _READ_DONE and item is not _DRAIN]
                if ready:
                    yield ready  # type: ignore[misc]
                    self._held -= len(ready)
                    self._room.set()
        finally:
            for task in (reader, watcher, *self._tasks):
                task.cancel()

    async def _read(self) -> None:
        """Take requests until the client half-closes (or the stream drains)."""
        try:
            async for request in self._requests:
                await self._room.wait()
                self._accept(request)
        finally:
            self._ready.put_nowait(_READ_DONE)

    async def _watch(self, closing: asyncio.Event) -> None:
        await closing.wait()
        self._ready.put_nowait(_DRAIN)

    def _accept(self, request: Request | list[Request]) -> None:
        count = len(request) if isinstance(request, list) else 1
        self._held += count
        self._running += count
        task = asyncio.create_task(self._answer_group(request) if isinstance(request, list) else self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Request) -> None:
        route = self._route
        outcome = await route.pipeline.run(route.method, request, route.handler, None, (self._limit,))
        self._running -= 1
        self._ready.put_nowait(_message(request, outcome))
        self._pause_if_unread()

    async def _answer_group(self, requests: list[Request]) -> None:
        route = self._route
        assert route.group_handler is not None, f"{route.method} reads no groups of requests"
        chunks = route.pipeline.run_many(route.method, requests, route.group_handler, (self._limit,))
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                self._running -= len(chunk)
                for i, outcome in chunk:
                    self._ready.put_nowait(_message(requests[i], outcome))
                self._pause_if_unread()

    def _pause_if_unread(self) -> None:
        if self._held >= 2 * self._limit.limit:
            self._room.clear()  # the client is not reading its answers: read no more until it does


def _message(request: Request, outcome: pb.InferResponse | ServingError) -> pb.StreamResponse:
    """The stream's message for ``request``: its answer, or its error under its id."""
    if isinstance(outcome, ServingError):
        error = pb.StreamError(request_id=request.request_id, code=outcome.code.value[0], message=outcome.message)
        return pb.StreamResponse(error=error)
    return pb.StreamResponse(response=outcome)
