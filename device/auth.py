"""Bearer tokens: who may call the device's API.

Tokens come from ``auth_token`` (env ``SPLITEXIT_DEVICE_AUTH_TOKEN``) and
``auth_tokens_file`` (one per line; ``#`` starts a comment), read once at start.
With none configured, the API is open. A call must carry ``authorization:
Bearer <token>`` (gRPC metadata or the HTTP header); the token is compared with
each accepted one in constant time and never logged. Health checks, reflection
and the Prometheus port take no token: they carry no samples and no answers.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

from splitexit.device.settings import DeviceSettings
from splitexit.shared.errors import Unauthenticated
from splitexit.shared.proto import splitexit_pb2 as pb

DEVICE_SERVICE = f"/{pb.DESCRIPTOR.package}.Device/"


class Tokens:
    """The bearer tokens the device accepts."""

    def __init__(self, tokens: list[bytes]) -> None:
        self._tokens = tokens

    @classmethod
    def from_settings(cls, settings: DeviceSettings) -> Tokens:
        tokens = [settings.auth_token.get_secret_value()] if settings.auth_token else []
        if settings.auth_tokens_file is not None:
            try:
                lines = settings.auth_tokens_file.read_text().splitlines()
            except OSError as exc:
                raise ValueError(
                    f"SPLITEXIT_DEVICE_AUTH_TOKENS_FILE={settings.auth_tokens_file}: {exc.strerror}"
                ) from None
            tokens += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
        return cls([token.encode() for token in tokens])

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> None:
        """Raise :class:`Unauthenticated` unless ``authorization`` is ``Bearer <an accepted token>``."""
        if not self._tokens:
            return
        if not authorization:
            raise Unauthenticated("this device requires a token: send `authorization: Bearer <token>`")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the authorization must be `Bearer <token>`")
        presented = token.strip().encode()
        if not any([hmac.compare_digest(presented, accepted) for accepted in self._tokens]):  # every one compared
            raise Unauthenticated("the token is not accepted by this device")


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class TokenCheck(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for a ``Device`` call without an accepted token, before any handler runs."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        if not handler_call_details.method.startswith(DEVICE_SERVICE):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            self.tokens.check(metadata.get("authorization"))
        except Unauthenticated as refusal:
            return _refusing(await continuation(handler_call_details), refusal)
        return await continuation(handler_call_details)


def _refusing(handler: grpc.RpcMethodHandler | None, refusal: Unauthenticated) -> grpc.RpcMethodHandler | None:
    """A handler of the same kind that only aborts UNAUTHENTICATED (no request is read)."""
    if handler is None:
        return None

    async def abort(request_or_requests: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(refusal.code, refusal.message)

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(abort, None, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(abort, None, handler.response_serializer)
