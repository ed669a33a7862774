"""gRPC's adapter to the request pipeline, for every RPC of a tier's own services.

:class:`ServingInterceptor` wraps the handlers of the ``splitexit.v1`` services
(health and reflection keep their own handlers, but bytes their request type
cannot parse are answered INVALID_ARGUMENT: :func:`refusing_undecodable`). It does only what is gRPC's:

* bytes that do not parse as the method's request message become an
  :class:`~splitexit.shared.pipeline.Undecodable`, which the pipeline answers
  INVALID_ARGUMENT (a unary call) or a stream answers with a ``StreamError``, not INTERNAL;
* a unary call that comes once the tier drains (``drain.closing``) is refused UNAVAILABLE, so that its
  caller sends it elsewhere (gRPC's own refusal, once the server stops, can race with a call it had just
  taken and cancel it instead);
* a unary call goes through :meth:`~splitexit.shared.pipeline.Pipeline.run`
  with its gRPC deadline; the handler finds the request's deadline in
  :data:`~splitexit.shared.deadlines.CALL_DEADLINE`, and an error becomes
  ``context.abort(code, message)``;
* the messages of a stream go through the pipeline one by one
  (:func:`splitexit.shared.streams.serve_stream`); a stream that fails as a
  whole (it drains, say) ends with its status. A stream counts in
  ``drain.open_streams`` until gRPC reports it done, its status sent: the drain
  stops the server once none is open, and stopping it while a status was still
  on its way could reset the stream instead.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from splitexit.shared.deadlines import CALL_DEADLINE, Deadline
from splitexit.shared.errors import ServingError, ShuttingDown, as_serving_error
from splitexit.shared.lifecycle import Drain
from splitexit.shared.pipeline import Pipeline, Request, Undecodable
from splitexit.shared.proto import splitexit_pb2 as pb

SERVICE_PREFIX = f"/{pb.DESCRIPTOR.package}."
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class ServingInterceptor(grpc.aio.ServerInterceptor):
    """Lenient parsing, the pipeline and status codes for one tier's ``splitexit.v1`` RPCs."""

    def __init__(self, pipeline: Pipeline, drain: Drain) -> None:
        self.pipeline = pipeline
        self.drain = drain
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # full method name -> its wrapped handler

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        full_name = handler_call_details.method
        if full_name in self._wrapped:
            return self._wrapped[full_name]
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if full_name.startswith(SERVICE_PREFIX):
            self._wrapped[full_name] = self._wrap(full_name.rsplit("/", 1)[-1], handler)
        else:
            self._wrapped[full_name] = refusing_undecodable(handler)
        return self._wrapped[full_name]

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        parse = _lenient(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), parse, handler.response_serializer
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream), parse, handler.response_serializer
            )
        return handler

    def _unary(self, method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Request, context: grpc.aio.ServicerContext) -> Any:
            async def call(checked: Message, deadline: Deadline | None) -> Any:
                CALL_DEADLINE.set(deadline)
                return await behavior(checked, context)

            if self.drain.closing.is_set():
                outcome: Any = ShuttingDown(
                    f"the {self.pipeline.where} is shutting down and takes no new calls: send this one again"
                )
            else:
                remaining = context.time_remaining()
                transport = None if remaining is None else Deadline.after(remaining)
                outcome = await self.pipeline.run(method, request, call, transport)
            if isinstance(outcome, ServingError):
                await context.abort(outcome.code, outcome.message)
            return outcome

        return handle

    def _stream(self, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def handle(requests: AsyncIterator[Request], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            self.drain.open_streams += 1
            context.add_done_callback(self._stream_done)
            try:
                async for message in behavior(requests, context):
                    yield message
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - the stream as a whole failed
                error = as_serving_error(exc, self.pipeline.where)
                await context.abort(error.code, error.message)

        return handle

    def _stream_done(self, context: grpc.aio.ServicerContext) -> None:
        self.drain.open_streams -= 1


def _lenient(parse: Callable[[bytes], Message] | None) -> Callable[[bytes], Request] | None:
    """``parse``, returning :class:`Undecodable` instead of raising (gRPC would answer INTERNAL)."""
    if parse is None:
        return None

    def parse_or_mark(data: bytes) -> Request:
        try:
            return parse(data)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
            return Undecodable(exc)

    return parse_or_mark


FACTORIES = {  # (streams requests, streams answers) -> how gRPC makes a handler of that kind
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def refusing_undecodable(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` (of health or reflection), but a request that does not parse is INVALID_ARGUMENT.

    gRPC itself answers UNKNOWN when a request deserializer raises.
    """
    field, factory = FACTORIES[bool(handler.request_streaming), bool(handler.response_streaming)]
    behavior = getattr(handler, field)

    async def refuse(request: Request, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(request.error.code, request.error.message)
        return request

    async def each(requests: AsyncIterator[Request], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            yield await refuse(request, context)

    async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return each(request, context) if handler.request_streaming else await refuse(request, context)

    async def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await behavior(await checked(request, context), context)  # health's Watch writes its answers

    async def answers(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for one in behavior(await checked(request, context), context):
            yield one

    wrapped = answers if inspect.isasyncgenfunction(behavior) else answer
    return factory(wrapped, _lenient(handler.request_deserializer), handler.response_serializer)
