"""The link from one tier to the next: one persistent ``ContinueBatches`` stream, many requests on it.

Opening a stream once and multiplexing requests on it costs about a third of a
unary call per message (docs/architecture.md). Requests wait in an outbox while
a write is under way, and the next write sends all of them as one message, so
under load gRPC's fixed cost per message is paid once per batch, and a lone
request leaves at once. Samples that stack travel as columns, one activation
tensor for them all (:mod:`splitexit.shared.columns`). A tier sends a group of samples in one
:meth:`TierLink.call_many`: one entry in the outbox each, and one waiting call that a future wakes once
per chunk of answers, not a future and a timer per sample. Answers come back in any order, several per
message; a reader task puts each in the inbox of the call waiting for it. Requests travel under
ids the link assigns itself, so two clients that both call their request
"order-1" never meet on the link; the caller gets its answer back under its own id.

A link that breaks must not stall the tier, and one that heals must be used
again at once:

* every call waits at most the time its request has left, write included;
* keepalive pings find a dead connection within ~5 s (a slow link's queue must
  not pass for a dead one); reconnecting backs off to 0.5 s at most, and a
  connection attempt may take 2 s (a high-latency link needs a few round trips);
* a watch of the next tier's health (``grpc.health.v1.Health/Watch``) keeps
  :attr:`TierLink.reachable` current, so while the next tier is down or
  draining, calls fail at once instead of waiting, and traffic returns within
  about half a second of it reporting SERVING again; a watch that ends with its
  connection (a GOAWAY) is renewed before the tier is taken for down.

Failures are :class:`~splitexit.shared.errors.LinkFailure`\\ s, which a tier can
answer degraded from (see :mod:`splitexit.shared.node`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitexit.shared.columns import pack
from splitexit.shared.errors import (
    NextTierTooSlow,
    NextTierUnavailable,
    ServingError,
    remote_failure,
    status_from_number,
)
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
Dial = Callable[[str, list[tuple[str, Any]]], grpc.aio.Channel]  # (address, options) -> a channel (TLS or not)
WATCH_RETRY_S = 0.1  # between health watches while the next tier is down
RENEW_S = 0.5  # how long a watch renewed after its connection ended may take to hear from the tier


Outcome = pb.InferResponse | ServingError  # the next tier's answer to a request, or why there is none
Answers = AsyncIterator[list[tuple[int, Outcome]]]  # (index of a request, its outcome), in chunks as they come


def _why(exc: Exception) -> str:
    return exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc) or type(exc).__name__


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC options raising both message limits (the receive default is 4 MB)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def link_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel options of a tier-to-tier link: message limits, fast reconnects, keepalive."""
    return [
        *channel_options(max_message_bytes),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
        ("grpc.min_reconnect_backoff_ms", 2000),  # gRPC's name for the least time a connection attempt gets
        ("grpc.keepalive_time_ms", 2000),
        ("grpc.keepalive_timeout_ms", 3000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.use_local_subchannel_pool", 1),  # a connection of its own, not one shared with other links there
    ]


class Link(Protocol):
    """What a tier sends samples on: a :class:`TierLink`, or a :class:`~splitexit.shared.link_pool.LinkPool` of them."""

    address: str  # where the next tier is: host:port, or a name:port whose replicas a pool balances over
    reachable: bool | None  # the next tier's health: None until its first report
    on_reachable: Callable[[bool], None]  # told every change of ``reachable``

    def start(self) -> None:
        """Start watching the next tier (needs the running event loop)."""

    async def call(self, request: pb.ContinueRequest, timeout_s: float) -> pb.InferResponse:
        """The next tier's answer to ``request`` within ``timeout_s``; a ``LinkFailure`` when it cannot be had."""

    def call_many(self, requests: Sequence[pb.ContinueRequest], timeouts_s: Sequence[float]) -> Answers:
        """(index, answer or error) of each of ``requests`` as the next tier answers them, in chunks: sent
        together, each waiting at most its ``timeouts_s``; an error that is a ``LinkFailure`` may be answered
        degraded."""

    async def close(self) -> None:
        """Stop watching and close every channel."""


class _Inbox:
    """Where the answers to one call's requests arrive, by index, until the call takes them: one future per wait."""

    __slots__ = ("_loop", "_arrived", "_wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arrived: list[tuple[int, Outcome]] = []
        self._wake: asyncio.Future[None] | None = None

    def put(self, index: int, outcome: Outcome) -> None:
        self._arrived.append((index, outcome))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def take(self, until: float) -> list[tuple[int, Outcome]]:
        """What arrived since the last take, waiting for something until the loop's time ``until`` at most."""
        if not self._arrived:
            self._wake = self._loop.create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(until):
                    await self._wake
        taken, self._arrived = self._arrived, []
        return taken


async def answer_of(link: Link, request: pb.ContinueRequest, timeout_s: float) -> pb.InferResponse:
    """``link.call`` as every link has it: the one outcome of :meth:`Link.call_many` for ``request``, raised if it is
    an error."""
    async with contextlib.aclosing(link.call_many([request], [timeout_s])) as chunks:
        async for chunk in chunks:
            outcome = chunk[0][1]
            if isinstance(outcome, ServingError):
                raise outcome
            return outcome
    raise AssertionError("call_many ended without an outcome for its request")


class TierLink:
    """A client of the next tier's ``Tier`` service, shared by every request of this tier (a :class:`Link`)."""

    def __init__(
        self,
        address: str,
        max_message_bytes: int,
        *,
        on_reachable: Callable[[bool], None] = lambda up: None,
        dial: Dial = grpc.aio.insecure_channel,
        columns: bool = True,
    ) -> None:
        self.address = address
        self.columns = columns  # stackable samples travel as ContinueColumns (off: a ContinueRequest each)
        self.reachable: bool | None = None  # the next tier's health: None until its first report
        self.on_reachable = on_reachable  # told every change of ``reachable``
        self._channel = dial(address, link_options(max_message_bytes))
        self._stub = pb_grpc.TierStub(self._channel)
        self._stream: grpc.aio.StreamStreamCall | None = None
        self._pending: dict[str, tuple[_Inbox, int]] = {}  # wire id -> where its answer goes, and its index there
        self._outbox: list[tuple[str, pb.ContinueRequest]] = []  # (wire id, request) not yet written
        self._writer: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start watching the next tier's health (needs the running event loop)."""
        self._spawn(self._watch_health())

    async def call(self, request: pb.ContinueRequest, timeout_s: float) -> pb.InferResponse:
        """Send one request on the stream and wait at most ``timeout_s`` for its answer."""
        return await answer_of(self, request, timeout_s)

    async def call_many(self, requests: Sequence[pb.ContinueRequest], timeouts_s: Sequence[float]) -> Answers:
        """Send ``requests`` together (one link message, their activations one tensor where they stack) and yield
        (index, answer or error) of each as the next tier answers, in chunks; request ``i`` waits at most
        ``timeouts_s[i]``. One future wakes this call per chunk, whatever the number of requests."""
        if self.reachable is False:
            down = NextTierUnavailable(f"the next tier at {self.address} is not serving")
            yield [(i, down) for i in range(len(requests))]
            return
        loop = asyncio.get_running_loop()
        inbox = _Inbox(loop)
        own_ids = [request.request_id for request in requests]
        wire_ids = [str(next(self._ids)) for _ in requests]
        now = loop.time()
        deadlines = [(now + timeout_s, i) for i, timeout_s in enumerate(timeouts_s)]
        heapq.heapify(deadlines)
        for i, (request, wire_id) in enumerate(zip(requests, wire_ids)):
            request.request_id = wire_id
            self._pending[wire_id] = (inbox, i)
        self._post(list(zip(wire_ids, requests)))
        waiting = set(range(len(requests)))
        try:
            while waiting:
                while deadlines[0][1] not in waiting:
                    heapq.heappop(deadlines)  # answered already
                arrived = {i: outcome for i, outcome in await inbox.take(deadlines[0][0]) if i in waiting}
                now = loop.time()
                while deadlines and deadlines[0][0] <= now:
                    _, i = heapq.heappop(deadlines)
                    if i in waiting and i not in arrived:
                        arrived[i] = NextTierTooSlow(
                            f"no answer from the next tier at {self.address} within {timeouts_s[i]:.3f} s"
                        )
                for i, outcome in arrived.items():
                    waiting.discard(i)
                    self._pending.pop(wire_ids[i], None)
                    if isinstance(outcome, pb.InferResponse):
                        outcome.request_id = own_ids[i]
                if arrived:
                    yield list(arrived.items())
        finally:
            for request, wire_id, own_id in zip(requests, wire_ids, own_ids):
                self._pending.pop(wire_id, None)
                request.request_id = own_id

    def _post(self, requests: list[tuple[str, pb.ContinueRequest]]) -> None:
        """Put (wire id, request) s in the outbox and make sure a writer will send them."""
        self._outbox.extend(requests)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_outbox())
            self._tasks.add(self._writer)
            self._writer.add_done_callback(self._tasks.discard)

    async def _write_outbox(self) -> None:
        """Write everything in the outbox, one message per write, until it is empty."""
        while self._outbox:
            sending = [(wire_id, request) for wire_id, request in self._outbox if wire_id in self._pending]
            self._outbox.clear()
            if not sending:
                continue  # every caller gave up before its request left
            requests = [request for _, request in sending]
            # Both copy what they send: callers may move on.
            batch = pack(requests) if self.columns else pb.ContinueBatch(requests=requests)
            stream = self._open_stream()
            try:
                await stream.write(batch)
            except Exception as exc:  # noqa: BLE001 - a write that fails fails its requests, not the tier
                stream.cancel()
                failure = NextTierUnavailable(f"the next tier at {self.address} is unreachable: {_why(exc)}")
                for wire_id, _ in sending:
                    self._settle(wire_id, failure)

    def _open_stream(self) -> grpc.aio.StreamStreamCall:
        if self._stream is None or self._stream.done():
            self._stream = self._stub.ContinueBatches()
            self._spawn(self._read_answers(self._stream))
        return self._stream

    async def _read_answers(self, stream: grpc.aio.StreamStreamCall) -> None:
        failure: ServingError = NextTierUnavailable(f"the next tier at {self.address} closed the stream")
        try:
            async for message in stream:
                for answer in message.answers:
                    self._deliver(answer)
        except grpc.aio.AioRpcError as exc:
            failure = remote_failure(exc.code(), f"the link to the next tier at {self.address} failed: {exc.details()}")
            if exc.code() is grpc.StatusCode.CANCELLED:
                failure = NextTierUnavailable(f"the stream to the next tier at {self.address} was reset")
        finally:
            if self._stream is stream:
                self._stream = None
            for wire_id in list(self._pending):
                self._settle(wire_id, failure)

    def _deliver(self, message: pb.StreamResponse) -> None:
        if message.HasField("error"):
            request_id = message.error.request_id
            outcome: Outcome = remote_failure(status_from_number(message.error.code), message.error.message)
        else:
            request_id, outcome = message.response.request_id, message.response
        self._settle(request_id, outcome)

    def _settle(self, wire_id: str, outcome: Outcome) -> None:
        """Hand ``outcome`` to the call waiting for ``wire_id``; none waits if it gave up (deadline) before."""
        waiting = self._pending.pop(wire_id, None)
        if waiting is not None:
            inbox, index = waiting
            inbox.put(index, outcome)

    async def _watch_health(self) -> None:
        """Follow the next tier's health. A watch that ends while the tier was serving may be the connection's
        end, not the tier's (a GOAWAY, a maximum connection age): it is renewed at once, and the tier is only
        taken for down if the renewal has no word from it within ``RENEW_S``."""
        health = health_pb2_grpc.HealthStub(self._channel)
        renewing = False
        while True:
            call = health.Watch(health_pb2.HealthCheckRequest())
            try:
                async with asyncio.timeout(RENEW_S if renewing else None):
                    reply = await call.read()
                while reply is not grpc.aio.EOF:
                    renewing = False
                    self._set_reachable(reply.status == health_pb2.HealthCheckResponse.SERVING)
                    reply = await call.read()
            except (grpc.aio.AioRpcError, TimeoutError):
                call.cancel()
            if self.reachable and not renewing:
                renewing = True
                continue
            renewing = False
            self._set_reachable(False)
            await asyncio.sleep(WATCH_RETRY_S)

    def _set_reachable(self, up: bool) -> None:
        if up != self.reachable:
            log.info("the next tier at %s is %s", self.address, "serving" if up else "not serving")
            self.reachable = up
            self.on_reachable(up)

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._stream is not None:
            self._stream.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close()
