"""What every RPC of a tier's own services gets, in one place: metrics, status mapping, request ids.

:class:`ServingInterceptor` wraps the handlers of the ``splitexit.v1`` services
(health and reflection pass through untouched):

* bytes that do not parse as the method's request message are INVALID_ARGUMENT
  (a unary call) or a ``StreamError`` (a stream message), not INTERNAL;
* a request without a ``request_id`` gets one, so answers and logs can name it;
  one whose id is over :data:`MAX_REQUEST_ID` characters is INVALID_ARGUMENT;
* a unary call's gRPC deadline is put in
  :data:`~splitexit.shared.deadlines.CALL_DEADLINE` for the handler, and
  enforced: a handler still running then is cancelled (DEADLINE_EXCEEDED);
* each unary call, and each request of a stream (a ``ContinueBatch`` carries
  several), is one request in the tier's metrics (in flight, then counted by status code and timed);
* a :class:`~splitexit.shared.errors.ServingError` a unary handler raises
  becomes ``context.abort(code, message)``; anything else is logged and becomes
  INTERNAL with one line. Inside a stream, errors belong to single messages
  (:func:`splitexit.shared.streams.serve_stream` answers them as ``StreamError``);
  a stream that fails as a whole is mapped the same way as a unary call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import Message

from splitexit.shared.deadlines import CALL_DEADLINE, Deadline
from splitexit.shared.errors import DeadlineExceeded, InvalidInput, as_serving_error, status_from_number
from splitexit.shared.metrics import InFlight, TierMetrics
from splitexit.shared.proto import splitexit_pb2 as pb

SERVICE_PREFIX = f"/{pb.DESCRIPTOR.package}."
MAX_REQUEST_ID = 256
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class ServingInterceptor(grpc.aio.ServerInterceptor):
    """Metrics, status mapping and request ids for one tier's ``splitexit.v1`` RPCs."""

    def __init__(self, metrics: TierMetrics, where: str, default_model: str = "") -> None:
        self.metrics = metrics
        self.where = where  # "device", "edge" or "cloud", for messages
        self.default_model = default_model
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # full method name -> its wrapped handler

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        full_name = handler_call_details.method
        if full_name in self._wrapped:
            return self._wrapped[full_name]
        handler = await continuation(handler_call_details)
        if handler is None or not full_name.startswith(SERVICE_PREFIX):
            return handler
        self._wrapped[full_name] = self._wrap(full_name.rsplit("/", 1)[-1], handler)
        return self._wrapped[full_name]

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        parse = _lenient(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), parse, handler.response_serializer
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream), parse, handler.response_serializer
            )
        return handler

    def _model_of(self, request: Message) -> str:
        return getattr(request, "model", "") or self.default_model

    def _unary(self, method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Message, context: grpc.aio.ServicerContext) -> Any:
            with self.metrics.request(method, self._model_of(request)) as call:
                try:
                    check_request(request)
                    remaining = context.time_remaining()
                    deadline = None if remaining is None else Deadline.after(remaining)
                    CALL_DEADLINE.set(deadline)
                    async with asyncio.timeout(None if deadline is None else remaining):
                        return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure becomes a status
                    error = as_serving_error(_timed_out(exc), self.where)
                    call.code = error.code
                    await context.abort(error.code, error.message)

        return handle

    def _stream(self, method: str, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def handle(requests: AsyncIterator[Message], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            calls: dict[str, deque[InFlight]] = defaultdict(deque)

            async def counted() -> AsyncIterator[Message]:
                async for message in requests:
                    for request in _requests_in(message):
                        if not isinstance(request, Undecodable):
                            assign_request_id(request)
                        calls[request.request_id].append(self.metrics.start(method, self._model_of(request)))
                    yield message

            try:
                async for message in behavior(counted(), context):
                    for response in message.answers if isinstance(message, pb.StreamBatch) else (message,):
                        _finish(calls, response)
                    yield message
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - the stream as a whole failed
                error = as_serving_error(exc, self.where)
                await context.abort(error.code, error.message)
            finally:
                for waiting in calls.values():
                    for call in waiting:
                        call.finish(grpc.StatusCode.CANCELLED)

        return handle


class Undecodable:
    """What a request that is not a valid protobuf message of its method parses to."""

    request_id = ""
    model = ""

    def __init__(self, error: Exception) -> None:
        self.error = InvalidInput(f"the request is not a valid protobuf message of this method: {error}")


def _requests_in(message: Message | Undecodable) -> Iterable[Message | Undecodable]:
    """The requests one stream message carries: those of a ``ContinueBatch``, else the message itself."""
    return message.requests if isinstance(message, pb.ContinueBatch) else (message,)


def _lenient(parse: Callable[[bytes], Message] | None) -> Callable[[bytes], Message | Undecodable] | None:
    """``parse``, returning :class:`Undecodable` instead of raising (gRPC would answer INTERNAL)."""
    if parse is None:
        return None

    def parse_or_mark(data: bytes) -> Message | Undecodable:
        try:
            return parse(data)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
            return Undecodable(exc)

    return parse_or_mark


def check_request(request: Message | Undecodable) -> None:
    """Raise INVALID_ARGUMENT for an undecodable request or an overlong id; give a request without an id one."""
    if isinstance(request, Undecodable):
        raise request.error
    if len(getattr(request, "request_id", "")) > MAX_REQUEST_ID:
        raise InvalidInput(f"request_id is {len(request.request_id):,} characters long; at most {MAX_REQUEST_ID} are accepted")
    assign_request_id(request)


def assign_request_id(request: Message) -> None:
    """Give a request that carries a ``request_id`` field but no value a fresh one."""
    if "request_id" in request.DESCRIPTOR.fields_by_name and not request.request_id:
        request.request_id = uuid.uuid4().hex


def _timed_out(exc: Exception) -> Exception:
    """The enforced deadline's TimeoutError as DEADLINE_EXCEEDED; anything else as it is."""
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded("the request's deadline passed before it was answered")
    return exc


def _finish(calls: dict[str, deque[InFlight]], response: pb.StreamResponse) -> None:
    """Count the stream message ``response`` answers, by the code it carries."""
    if response.HasField("error"):
        request_id, code = response.error.request_id, status_from_number(response.error.code)
    else:
        request_id, code = response.response.request_id, grpc.StatusCode.OK
    waiting = calls.get(request_id)
    if waiting:
        waiting.popleft().finish(code)
        if not waiting:
            del calls[request_id]
