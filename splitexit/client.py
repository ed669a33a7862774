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
stream with a bounded number in flight.

The SDK needs grpcio and protobuf only (numpy for tensor inputs): ``pip install
splitexit`` installs it without the serving stack, ``pip install 'splitexit[serve]'``
adds what the tiers need.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitexit.results import ClientError, ModelInfo, Prediction
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc

MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 30.0
TENSOR_DTYPES = {"float32": pb.FP32, "float16": pb.FP16, "int64": pb.INT64, "uint8": pb.UINT8}
T = TypeVar("T")


@dataclass(frozen=True)
class TLS:
    """A TLS channel: PEM bytes of the CA to trust (None: the system's), and a client certificate for mutual TLS."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None  # the name the server's certificate must carry, if not the address's host

    @classmethod
    def from_files(cls, root: Path | None = None, cert: Path | None = None, key: Path | None = None) -> TLS:
        read = lambda path: None if path is None else Path(path).read_bytes()  # noqa: E731
        return cls(read(root), read(cert), read(key))


def service_config(retries: int) -> str:
    """gRPC's service config: retry Device calls on UNAVAILABLE only, ``retries`` times at most, with backoff."""
    policy = {
        "maxAttempts": retries + 1,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": [{"service": "splitexit.v1.Device"}], "retryPolicy": policy}]})


def open_channel(address: str, tls: TLS | bool = False, retries: int = 4) -> grpc.aio.Channel:
    """An asyncio channel to ``address``; retries (0 turns them off, gRPC allows at most 4) as :func:`service_config`."""
    if not 0 <= retries <= 4:
        raise ValueError(f"retries must be 0..4 (gRPC makes at most 5 attempts), not {retries}")
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", int(retries > 0)),
        ("grpc.initial_reconnect_backoff_ms", 100),  # a restarted device is found again within the retries
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if retries:
        options.append(("grpc.service_config", service_config(retries)))
    if tls is False:
        return grpc.aio.insecure_channel(address, options=options)
    settings = TLS() if tls is True else tls
    if settings.server_name:
        options.append(("grpc.ssl_target_name_override", settings.server_name))
    credentials = grpc.ssl_channel_credentials(settings.root_certificates, settings.private_key, settings.certificate_chain)
    return grpc.aio.secure_channel(address, credentials, options=options)


def tensor_message(array: Any) -> pb.Tensor:
    """A numpy array (block 1's input, batch 1, preprocessed as ``ModelMetadata`` says) as a ``Tensor``."""
    import numpy as np

    array = np.ascontiguousarray(array)
    if array.dtype.name not in TENSOR_DTYPES:
        raise ValueError(f"tensors are {', '.join(TENSOR_DTYPES)}, not {array.dtype.name}")
    return pb.Tensor(dtype=TENSOR_DTYPES[array.dtype.name], shape=array.shape, raw=array.astype(array.dtype.newbyteorder("<")).tobytes())


def request(
    image: bytes | None = None,
    *,
    text: str | None = None,
    tensor: Any = None,
    model: str = "",
    threshold: float | None = None,
    policy: str = "",
    top_k: int = 0,
    truncate: bool = False,
    timeout_s: float | None = None,
    forbid_degraded: bool = False,
    request_id: str = "",
) -> pb.InferRequest:
    """One ``InferRequest``: exactly one of ``image`` (encoded bytes), ``text`` or ``tensor`` (numpy).

    ``threshold`` exits at the first exit whose confidence exceeds it (0..1, at every exit);
    ``policy`` names a device policy instead (``splitee``, ``dimee``, ...); neither: the model's default.
    """
    given = [name for name, value in (("image", image), ("text", text), ("tensor", tensor)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of image, text and tensor, not {' and '.join(given) or 'none'}")
    inputs: dict[str, Any] = {}
    if image is not None:
        inputs["image"] = bytes(image)
    elif text is not None:
        inputs["text"] = text.encode("utf-8", errors="strict")
    else:
        inputs["tensor"] = tensor_message(tensor)
    plan = None if threshold is None and not policy else pb.PolicyOverride(threshold=threshold, name=policy)
    return pb.InferRequest(
        model=model, request_id=request_id, policy=plan, top_k=top_k, truncate=truncate, timeout_s=timeout_s,
        forbid_degraded=forbid_degraded, **inputs,
    )  # fmt: skip


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
        self._stub = pb_grpc.DeviceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, message: Any, timeout_s: float | None) -> Any:
        try:
            return await method(message, timeout=timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc_error(exc) from None

    async def infer(
        self, image: bytes | None = None, *, timeout_s: float | None = None, **options: Any
    ) -> Prediction:
        """Classify one input; ``options`` as :func:`request` (``text=``, ``model=``, ``top_k=``, ...)."""
        return await self.infer_request(request(image, **options), timeout_s)

    async def infer_request(self, message: pb.InferRequest, timeout_s: float | None = None) -> Prediction:
        """Send a ready-made ``InferRequest`` (see :func:`request`)."""
        return Prediction.from_message(await self._call(self._stub.Infer, message, timeout_s or self.timeout_s))

    async def infer_many(
        self, messages: Iterable[pb.InferRequest], *, max_in_flight: int = 64
    ) -> AsyncIterator[Prediction | ClientError]:
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

        call = self._stub.InferStream(outgoing(), metadata=self._metadata)
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

    async def list_models(self) -> tuple[str, list[ModelInfo]]:
        """The device's default model and every model it serves."""
        reply = await self._call(self._stub.ListModels, pb.ListModelsRequest(), self.timeout_s)
        return reply.default_model, [ModelInfo.from_message(m) for m in reply.models]

    async def model(self, name: str = "") -> ModelInfo:
        """One model's contract (the default model's if ``name`` is empty); NOT_FOUND if unknown."""
        return ModelInfo.from_message(await self._call(self._stub.ModelMetadata, pb.ModelMetadataRequest(model=name), self.timeout_s))

    async def policy_state(self, model: str = "", policy: str = "") -> pb.PolicyState:
        """What a device policy has learned (``splitexit policy show``)."""
        return await self._call(self._stub.GetPolicyState, pb.PolicyStateRequest(model=model, policy=policy), self.timeout_s)


class Client:
    """The blocking twin of :class:`AsyncClient`: the same calls, run on a private event loop thread.

    ``with Client("127.0.0.1:50051") as client: answer = client.infer(png)``
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="splitexit-client", daemon=True)
        self._thread.start()
        self._client: AsyncClient = self._run(_open(address, options))
        self.address = address

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

    def infer(self, image: bytes | None = None, **options: Any) -> Prediction:
        """As :meth:`AsyncClient.infer`."""
        return self._run(self._client.infer(image, **options))

    def infer_request(self, message: pb.InferRequest, timeout_s: float | None = None) -> Prediction:
        """As :meth:`AsyncClient.infer_request`."""
        return self._run(self._client.infer_request(message, timeout_s))

    def infer_many(self, messages: Iterable[pb.InferRequest], *, max_in_flight: int = 64) -> Iterator[Prediction | ClientError]:
        """As :meth:`AsyncClient.infer_many`."""
        answers = self._client.infer_many(messages, max_in_flight=max_in_flight)
        try:
            while True:
                try:
                    yield self._run(anext(answers))
                except StopAsyncIteration:
                    return
        finally:
            self._run(answers.aclose())

    def list_models(self) -> tuple[str, list[ModelInfo]]:
        return self._run(self._client.list_models())

    def model(self, name: str = "") -> ModelInfo:
        return self._run(self._client.model(name))

    def policy_state(self, model: str = "", policy: str = "") -> pb.PolicyState:
        return self._run(self._client.policy_state(model, policy))


async def _open(address: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(address, **options)  # inside the client's loop: the channel belongs to it


async def is_serving(address: str, timeout_s: float = 1.0, tls: TLS | bool = False) -> bool:
    """True once the server at ``address`` answers its health check with SERVING."""
    async with open_channel(address, tls, retries=0) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING
