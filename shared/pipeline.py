"""One request's way through a tier, whatever the transport: each cross-cutting concern once, in one place.

Every request a tier serves -- a unary gRPC call, one message of a gRPC stream,
one request (or one column entry) of a link's ``ContinueBatch``, an HTTP ``POST /v1/infer`` -- passes
through :meth:`Pipeline.run`, which applies, in this order, one stage per concern:

1. **metrics**: the request is in flight, then counted by the status it ended
   with and timed (:meth:`~splitexit.shared.metrics.TierMetrics.request`);
2. **validation**: an undecodable message or an overlong ``request_id`` is
   INVALID_ARGUMENT; a request without an id gets one (:func:`validate`);
3. **admission**: a request that runs blocks takes a slot of its stream's limit
   and of the tier's ``max_in_flight``, or is RESOURCE_EXHAUSTED (:class:`Slots`);
4. **deadline**: the message's ``timeout_s``, the transport's deadline (a unary
   call's gRPC deadline) or the tier's default (:func:`deadline_of`), enforced
   for the transport's;
5. **error mapping**: whatever the handler raises becomes one
   :class:`~splitexit.shared.errors.ServingError` (:func:`~splitexit.shared.errors.as_serving_error`).

The handler is the servicer's own work on a request and its deadline. The
pipeline never raises for a request: it returns the answer or that request's
error, so a transport only renders the one or the other (``context.abort``, a
``StreamError``, problem details).

A link's ``ContinueBatch`` carries many samples of one model: :meth:`Pipeline.run_many`
takes them through the same stages as one group (one metrics record, one admission
for all, one call of a group handler that runs them in shared batches), so the
per-sample work left is what differs between samples, and each sample still gets its
own answer or error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from splitexit.policies.plan import Plan
from splitexit.shared.admission import InFlightLimit
from splitexit.shared.deadlines import Deadline, deadline_for
from splitexit.shared.errors import DeadlineExceeded, InvalidInput, ServingError, as_serving_error
from splitexit.shared.metrics import InFlight, TierMetrics
from splitexit.shared.proto import splitexit_pb2 as pb

MAX_REQUEST_ID = 256
Answer = TypeVar("Answer")
Handler = Callable[[Any, Any], Awaitable[Answer]]  # (the request, its Deadline) -> the answer
# (the requests, their Deadlines) -> chunks of (index, the answer or what it failed with), as they are ready
GroupHandler = Callable[[list[Any], list[Deadline]], AsyncIterator[list[tuple[int, Answer | BaseException]]]]


class Refused:
    """A request that is refused before it is read: its error, answered under its id."""

    def __init__(self, error: ServingError, request_id: str = "", model: str = "") -> None:
        self.error, self.request_id, self.model = error, request_id, model


class Undecodable(Refused):
    """What a request that is not a valid protobuf message of its method parses to."""

    def __init__(self, error: Exception) -> None:
        super().__init__(InvalidInput(f"the request is not a valid protobuf message of this method: {error}"))


@dataclass(eq=False, kw_only=True)
class ColumnEntry:
    """One sample of a ``ContinueColumns`` message: the fields of its ``ContinueRequest``, its activation already
    decoded (a view of the column's tensor) and checked."""

    model: str
    request_id: str
    next_block: int
    x: np.ndarray
    plan: Plan  # parsed once per distinct plan of the column
    top_k: int
    timeout_s: float | None
    forbid_degraded: bool
    codec_s: float  # its share of decoding the column


Request = Message | Refused | ColumnEntry
WORK = (pb.InferRequest, pb.ContinueRequest, ColumnEntry)  # the requests that run blocks: admitted, own deadline


class Pipeline:
    """The cross-cutting work of one tier's requests: metrics, validation, deadline, admission, error mapping."""

    def __init__(self, *, metrics: TierMetrics, admission: InFlightLimit, where: str, default_timeout_s: float) -> None:
        self.metrics = metrics
        self.admission = admission
        self.where = where  # "device", "edge" or "cloud", for messages
        self.default_timeout_s = default_timeout_s
        self.default_model = ""  # what metrics call a request that names no model (the device's default)

    async def run(
        self,
        method: str,
        request: Request,
        handler: Handler[Answer],
        transport_deadline: Deadline | None = None,
        limits: Sequence[InFlightLimit] = (),
    ) -> Answer | ServingError:
        """``handler``'s answer to ``request``, or the request's error; ``limits``: admission beyond the tier's own."""
        with self.metrics.request(method, getattr(request, "model", "") or self.default_model) as call:
            try:
                validate(request)
                if not isinstance(request, WORK):
                    return await _enforced(handler(request, transport_deadline), transport_deadline)
                with Slots((*limits, self.admission), 1) as slot:
                    if slot.refusal is not None:
                        raise slot.refusal
                    deadline = deadline_of(request, transport_deadline, self.default_timeout_s)
                    return await _enforced(handler(request, deadline), transport_deadline)
            except Exception as exc:  # noqa: BLE001 - every failure becomes the request's error
                error = as_serving_error(_timed_out(exc), self.where)
                call.code = error.code
                return error

    async def run_many(
        self,
        method: str,
        requests: Sequence[Request],
        handler: GroupHandler[Answer],
        limits: Sequence[InFlightLimit] = (),
        transport: Deadline | None = None,
    ) -> AsyncIterator[list[tuple[int, Answer | ServingError]]]:
        """Requests of one model that run blocks, through the stages together: (index, answer or error) of each, in
        chunks as they are ready.

        The same stages as :meth:`run`, once for the group: each request is validated and
        given its deadline on its own (the sooner of its ``timeout_s`` and ``transport``'s,
        which the caller enforces); admission takes a slot per request while slots are
        free and refuses the rest; ``handler`` gets the admitted ones and their deadlines
        and yields its answers the same way. Each request is counted, and its slots freed,
        as its answer comes.
        """
        model = next((getattr(r, "model", "") for r in requests if getattr(r, "model", "")), self.default_model)
        with self.metrics.request(method, model, len(requests)) as calls:
            refused: list[tuple[int, Answer | ServingError]] = []
            going: list[tuple[int, Request, Deadline]] = []
            for i, request in enumerate(requests):
                try:
                    validate(request)
                    going.append((i, request, deadline_of(request, transport, self.default_timeout_s)))
                except Exception as exc:  # noqa: BLE001 - the request's own error
                    refused.append((i, as_serving_error(exc, self.where)))
            with Slots((*limits, self.admission), len(going)) as slots:
                refused += [(i, slots.refusal) for i, _, _ in going[slots.taken :]]
                going = going[: slots.taken]
                if refused:
                    yield _counted(calls, refused)
                if not going:
                    return
                answers = handler([request for _, request, _ in going], [deadline for _, _, deadline in going])
                async with contextlib.aclosing(answers):
                    async for chunk in answers:
                        outcomes = [(going[j][0], self._outcome(answer)) for j, answer in chunk]
                        slots.release(len(outcomes))
                        yield _counted(calls, outcomes)

    def _outcome(self, answer: Any) -> Any:
        """A handler's answer as it is, or what it failed with as the request's error."""
        return as_serving_error(_timed_out(answer), self.where) if isinstance(answer, BaseException) else answer


def _counted(calls: InFlight, outcomes: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """``outcomes``, each counted in metrics by its status."""
    codes = collections.Counter(
        outcome.code if isinstance(outcome, ServingError) else grpc.StatusCode.OK for _, outcome in outcomes
    )
    for code, count in codes.items():
        calls.finish(code, count)
    return outcomes


class Slots:
    """Admission for a group: a slot of every limit for as many of ``count`` requests as all have room for."""

    def __init__(self, limits: Sequence[InFlightLimit], count: int) -> None:
        self.limits: list[InFlightLimit] = []
        self.taken = count
        self.refusal: ServingError | None = None  # the error of the requests refused, if any
        for limit in limits:
            taken = limit.acquire_up_to(self.taken)
            if taken < self.taken and self.refusal is None:
                self.refusal = limit.refusal()
            for held in self.limits:
                held.release(self.taken - taken)
            self.limits.append(limit)
            self.taken = taken

    def release(self, count: int) -> None:
        """Free the slots of ``count`` requests that are answered."""
        count = min(count, self.taken)
        for limit in self.limits:
            limit.release(count)
        self.taken -= count

    def __enter__(self) -> Slots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release(self.taken)


def validate(request: Request) -> None:
    """Raise a refused request's error (INVALID_ARGUMENT for an undecodable one) or INVALID_ARGUMENT for an
    overlong id; give a request without an id one."""
    if isinstance(request, Refused):
        raise request.error
    if isinstance(request, Message) and "request_id" not in request.DESCRIPTOR.fields_by_name:
        return
    if len(request.request_id) > MAX_REQUEST_ID:
        raise InvalidInput(
            f"request_id is {len(request.request_id):,} characters long; at most {MAX_REQUEST_ID} are accepted"
        )
    if not request.request_id:
        request.request_id = uuid.uuid4().hex


def deadline_of(request: Message | ColumnEntry, transport: Deadline | None, default_s: float) -> Deadline:
    """The request's deadline: the sooner of its ``timeout_s`` and the transport's, else the tier's default."""
    if isinstance(request, ColumnEntry):
        timeout_s = request.timeout_s
    else:
        timeout_s = request.timeout_s if request.HasField("timeout_s") else None
    return deadline_for(timeout_s, transport, default_s)


async def _enforced(answer: Awaitable[Answer], transport: Deadline | None) -> Answer:
    """``answer``, cancelled when the transport's deadline passes (a unary call's gRPC deadline)."""
    if transport is None:
        return await answer
    async with asyncio.timeout(transport.remaining()):
        return await answer


def _timed_out(exc: Exception) -> Exception:
    """The enforced deadline's TimeoutError as DEADLINE_EXCEEDED; anything else as it is."""
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded("the request's deadline passed before it was answered")
    return exc
