"""The Python SDK of the device's gRPC API: :class:`AsyncClient`, and :class:`Client` for code without asyncio.

::

    from splitexit import Client
    with Client("127.0.0.1:50051") as client:
        answer = client.infer(Path("shirt.png").read_bytes(), top_k=3)
        print(answer.label_name, answer.confidence, answer.exit_tier)

Answers are :class:`~splitexit.results.Prediction` objects; a refused or failed
call raises :class:`~splitexit.results.ClientError` (status code and the
device's message). Every call has a deadline (``timeout_s``, 30 s unless the
client or the call says otherwise). Calls that fail with UNAVAILABLE (the device
is starting, restarting or draining) are retried by gRPC itself, with backoff,
per the channel's service config; no other status is retried. ``tls`` and
``token`` secure the channel and authenticate each call (``authorization:
Bearer <token>``). :meth:`AsyncClient.infer_many` sends many samples on one
stream with a bounded number in flight; :meth:`AsyncClient.infer_batch` sends N
samples of one model in one message and gets a :class:`~splitexit.results.BatchPrediction` of columns.

The SDK needs grpcio and protobuf only (numpy for tensor inputs): ``pip install
splitexit`` installs it without the serving stack, ``pip install 'splitexit[serve]'``
adds what the tiers need.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from splitexit.channel import TLS, is_serving, open_channel
from splitexit.messages import batch_request, request, tensor_message
from splitexit.results import BatchPrediction, ClientError, ModelInfo, ModelList, PolicyState, Prediction
from splitexit.shared.proto import splitexit_pb2 as pb

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "TLS",
    "AsyncClient",
    "BatchPrediction",
    "Client",
    "ClientError",
    "batch_request",
    "is_serving",
    "open_channel",
    "request",
    "tensor_message",
]
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 30.0
DEVICE_SERVICE = pb.DESCRIPTOR.services_by_name["Device"]
T = TypeVar("T")
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _unary(
    channel: grpc.aio.Channel, name: str, response: type[Response]
) -> grpc.aio.UnaryUnaryMultiCallable[Message, Response]:
    """The unary ``Device`` method ``name``, answering ``response`` messages."""
    return channel.unary_unary(
        f"/{DEVICE_SERVICE.full_name}/{name}",
        request_serializer=_serialize,
        response_deserializer=response.FromString,
    )


class AsyncClient:
    """``async with AsyncClient("127.0.0.1:50051") as client: answer = await client.infer(png)``."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        retries: int = 4,
        tls: TLS | bool = False,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = open_channel(address, tls, retries)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._infer = _unary(self._channel, "Infer", pb.InferResponse)
        self._infer_batch = _unary(self._channel, "InferBatch", pb.InferBatchResponse)
        self._list_models = _unary(self._channel, "ListModels", pb.ListModelsResponse)
        self._model_metadata = _unary(self._channel, "ModelMetadata", pb.ModelMetadataResponse)
        self._policy_state = _unary(self._channel, "GetPolicyState", pb.PolicyState)
        self._infer_stream = self._channel.stream_stream(
            f"/{DEVICE_SERVICE.full_name}/InferStream",
            request_serializer=pb.InferRequest.SerializeToString,
            response_deserializer=pb.StreamResponse.FromString,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[Message, Response], message: Message, timeout_s: float | None
    ) -> Response:
        try:
            return await method(message, timeout=timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None

    async def infer(
        self,
        image: bytes | None = None,
        *,
        text: str | None = None,
        tensor: ArrayLike | None = None,
        model: str = "",
        threshold: float | None = None,
        policy: str = "",
        top_k: int = 0,
        truncate: bool = False,
        timeout_s: float | None = None,
        forbid_degraded: bool = False,
        request_id: str = "",
    ) -> Prediction:
        """Classify one input: exactly one of ``image``, ``text`` or ``tensor``; the rest as :func:`request`.

        ``timeout_s`` is this call's deadline (None: the client's).
        """
        message = request(
            image,
            text=text,
            tensor=tensor,
            model=model,
            threshold=threshold,
            policy=policy,
            top_k=top_k,
            truncate=truncate,
            forbid_degraded=forbid_degraded,
            request_id=request_id,
        )
        return await self.infer_request(message, timeout_s)

    async def infer_request(self, message: pb.InferRequest, timeout_s: float | None = None) -> Prediction:
        """Send a ready-made ``InferRequest`` (see :func:`request`)."""
        return Prediction.from_message(await self._call(self._infer, message, timeout_s or self.timeout_s))

    async def infer_batch(
        self,
        images: Sequence[bytes] | None = None,
        *,
        texts: Sequence[str] | None = None,
        tensor: ArrayLike | None = None,
        model: str = "",
        threshold: float | None = None,
        policy: str = "",
        top_k: int = 0,
        truncate: bool = False,
        timeout_s: float | None = None,
        forbid_degraded: bool = False,
        request_ids: Sequence[str] = (),
    ) -> BatchPrediction:
        """N inputs of one model in one call, as :func:`batch_request`; ``timeout_s``: as :meth:`infer`'s."""
        message = batch_request(
            images,
            texts=texts,
            tensor=tensor,
            model=model,
            threshold=threshold,
            policy=policy,
            top_k=top_k,
            truncate=truncate,
            forbid_degraded=forbid_degraded,
            request_ids=request_ids,
        )
        return await self.infer_batch_request(message, timeout_s)

    async def infer_batch_request(
        self, message: pb.InferBatchRequest, timeout_s: float | None = None
    ) -> BatchPrediction:
        """Send a ready-made ``InferBatchRequest``; samples without an answer are in its ``failures``."""
        return BatchPrediction.from_message(await self._call(self._infer_batch, message, timeout_s or self.timeout_s))

    async def infer_many(
        self, messages: Iterable[pb.InferRequest], *, max_in_flight: int = 64
    ) -> AsyncGenerator[Prediction | ClientError, None]:
        """Send ``messages`` on one ``InferStream``, at most ``max_in_flight`` unanswered at a time.

        Yields each sample's answer, or its :class:`ClientError`, as it arrives (not
        in order: match them by ``request_id``; a message without one gets its
        position as its id). A message without ``timeout_s`` gets the client's.
        If the stream itself fails, :class:`ClientError` is raised.
        """
        slots = asyncio.Semaphore(max_in_flight)

        async def outgoing() -> AsyncIterator[pb.InferRequest]:
            pending = iter(messages)
            for position in itertools.count():
                await slots.acquire()  # before the next message is even read: a lazy source stays lazy
                message = next(pending, None)
                if message is None:
                    return
                yield self._completed(message, position)

        call = self._infer_stream(outgoing(), metadata=self._metadata)
        try:
            async for answer in call:
                slots.release()
                if answer.HasField("error"):
                    yield ClientError.from_stream_error(answer.error)
                else:
                    yield Prediction.from_message(answer.response)
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None
        finally:
            call.cancel()

    def _completed(self, message: pb.InferRequest, position: int) -> pb.InferRequest:
        """``message`` with its position as request id and the client's timeout, where it sets neither."""
        if message.request_id and (message.HasField("timeout_s") or not self.timeout_s):
            return message
        completed = pb.InferRequest()
        completed.CopyFrom(message)
        completed.request_id = completed.request_id or str(position)
        if not completed.HasField("timeout_s") and self.timeout_s:
            completed.timeout_s = self.timeout_s
        return completed

    async def list_models(self) -> ModelList:
        """The device's default model and every model it serves."""
        return ModelList.from_message(await self._call(self._list_models, pb.ListModelsRequest(), self.timeout_s))

    async def model(self, name: str = "") -> ModelInfo:
        """One model's contract (the default model's if ``name`` is empty); NOT_FOUND if unknown."""
        reply = await self._call(self._model_metadata, pb.ModelMetadataRequest(model=name), self.timeout_s)
        return ModelInfo.from_message(reply)

    async def policy_state(self, model: str = "", policy: str = "") -> PolicyState:
        """What a device policy has learned (``splitexit policy show``)."""
        reply = await self._call(self._policy_state, pb.PolicyStateRequest(model=model, policy=policy), self.timeout_s)
        return PolicyState.from_message(reply)


class Client:
    """The blocking twin of :class:`AsyncClient`: the same calls, run on a private event loop thread.

    ``with Client("127.0.0.1:50051") as client: answer = client.infer(png)``
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        retries: int = 4,
        tls: TLS | bool = False,
        token: str | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="splitexit-client", daemon=True)
        self._thread.start()
        self._client = self._run(_open(address, timeout_s=timeout_s, retries=retries, tls=tls, token=token))
        self.address = address
        self.timeout_s = timeout_s

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._run(self._loop.shutdown_asyncgens())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def infer(
        self,
        image: bytes | None = None,
        *,
        text: str | None = None,
        tensor: ArrayLike | None = None,
        model: str = "",
        threshold: float | None = None,
        policy: str = "",
        top_k: int = 0,
        truncate: bool = False,
        timeout_s: float | None = None,
        forbid_degraded: bool = False,
        request_id: str = "",
    ) -> Prediction:
        """As :meth:`AsyncClient.infer`."""
        message = request(
            image,
            text=text,
            tensor=tensor,
            model=model,
            threshold=threshold,
            policy=policy,
            top_k=top_k,
            truncate=truncate,
            forbid_degraded=forbid_degraded,
            request_id=request_id,
        )
        return self.infer_request(message, timeout_s)

    def infer_request(self, message: pb.InferRequest, timeout_s: float | None = None) -> Prediction:
        """As :meth:`AsyncClient.infer_request`."""
        return self._run(self._client.infer_request(message, timeout_s))

    def infer_batch(
        self,
        images: Sequence[bytes] | None = None,
        *,
        texts: Sequence[str] | None = None,
        tensor: ArrayLike | None = None,
        model: str = "",
        threshold: float | None = None,
        policy: str = "",
        top_k: int = 0,
        truncate: bool = False,
        timeout_s: float | None = None,
        forbid_degraded: bool = False,
        request_ids: Sequence[str] = (),
    ) -> BatchPrediction:
        """As :meth:`AsyncClient.infer_batch`."""
        message = batch_request(
            images,
            texts=texts,
            tensor=tensor,
            model=model,
            threshold=threshold,
            policy=policy,
            top_k=top_k,
            truncate=truncate,
            forbid_degraded=forbid_degraded,
            request_ids=request_ids,
        )
        return self.infer_batch_request(message, timeout_s)

    def infer_batch_request(self, message: pb.InferBatchRequest, timeout_s: float | None = None) -> BatchPrediction:
        """As :meth:`AsyncClient.infer_batch_request`."""
        return self._run(self._client.infer_batch_request(message, timeout_s))

    def infer_many(
        self, messages: Iterable[pb.InferRequest], *, max_in_flight: int = 64
    ) -> Iterator[Prediction | ClientError]:
        """As :meth:`AsyncClient.infer_many`."""
        answers = self._client.infer_many(messages, max_in_flight=max_in_flight)
        try:
            while True:
                try:
                    yield self._run(answers.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(answers.aclose())

    def list_models(self) -> ModelList:
        """As :meth:`AsyncClient.list_models`."""
        return self._run(self._client.list_models())

    def model(self, name: str = "") -> ModelInfo:
        """As :meth:`AsyncClient.model`."""
        return self._run(self._client.model(name))

    def policy_state(self, model: str = "", policy: str = "") -> PolicyState:
        """As :meth:`AsyncClient.policy_state`."""
        return self._run(self._client.policy_state(model, policy))


async def _open(
    address: str, *, timeout_s: float | None, retries: int, tls: TLS | bool, token: str | None
) -> AsyncClient:
    """An :class:`AsyncClient` made inside the client's loop: the channel belongs to it."""
    return AsyncClient(address, timeout_s=timeout_s, retries=retries, tls=tls, token=token)
