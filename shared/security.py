"""TLS on every port and link, mutual TLS between tiers, and who may call a tier.

A tier serves TLS with its certificate and key (``tls_cert_file``,
``tls_key_file``) unless it is configured ``plaintext`` (then it warns at
start); a tier with neither refuses to start. The edge and the cloud also
demand a client certificate signed by the tiers' CA (``tls_ca_file``): mutual
TLS. A link to the next tier presents this tier's certificate, trusts only that
CA, and checks that the next tier's certificate names it (``edge``, ``cloud``)
whatever address it dials (a pool dials replicas by IP address).

Being signed by the CA is not enough to resume a sample: a certificate names
the tier it was issued to (a ``spiffe://splitexit/<tier>`` URI, see
:mod:`splitexit.certs`), and :class:`PeerTierCheck` lets ``Tier`` calls
through only from the tiers before: the edge takes them from the device, the
cloud from the edge or the device. Health and reflection need only the TLS
handshake.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import grpc

from splitexit.certs import identity_of
from splitexit.shared.link import Dial
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.settings import TierSettings, tier_env_prefix
from splitexit.shared.tiers import Tier

log = logging.getLogger(__name__)
TIER_SERVICE = f"/{pb.DESCRIPTOR.package}.Tier/"
CALLERS: dict[Tier, frozenset[Tier]] = {
    Tier.DEVICE: frozenset(),
    Tier.EDGE: frozenset({Tier.DEVICE}),
    Tier.CLOUD: frozenset({Tier.EDGE, Tier.DEVICE}),
}


class TlsNotConfigured(ValueError):
    """A tier with neither certificates nor ``plaintext``: it will not serve in the clear by accident."""


def server_credentials(settings: TierSettings) -> grpc.ServerCredentials | None:
    """The tier's TLS credentials (mutual for the edge and the cloud); None when configured ``plaintext``."""
    if settings.plaintext:
        log.warning(
            "the %s serves PLAINTEXT on %s: anyone who reaches the port can read and send its traffic",
            settings.tier.value,
            settings.address,
        )
        return None
    cert, key, ca = _tls_files(settings)
    mutual = settings.tier is not Tier.DEVICE
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca if mutual else None, require_client_auth=mutual
    )


def link_dialer(settings: TierSettings) -> Dial:
    """How this tier dials the next one: its certificate, trusting only the CA, the next tier's name checked."""
    if settings.plaintext:
        return grpc.aio.insecure_channel
    cert, key, ca = _tls_files(settings)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    assert settings.tier.next is not None, "the cloud has no next tier"
    expected = [("grpc.ssl_target_name_override", settings.tier.next.value)]

    def dial(address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, credentials, options=[*options, *expected])

    return dial


def _tls_files(settings: TierSettings) -> tuple[bytes, bytes, bytes]:
    prefix = tier_env_prefix(settings.tier)
    files = {
        "TLS_CERT_FILE": settings.tls_cert_file,
        "TLS_KEY_FILE": settings.tls_key_file,
        "TLS_CA_FILE": settings.tls_ca_file,
    }
    missing = [name for name, path in files.items() if path is None]
    if missing:
        raise TlsNotConfigured(
            f"the {settings.tier.value} needs {', '.join(prefix + m for m in missing)} to serve TLS "
            f"(`splitexit certs DIR` makes a development set), or {prefix}PLAINTEXT=true to serve in the clear"
        )
    contents = []
    for name, path in files.items():
        try:
            contents.append(path.read_bytes())  # type: ignore[union-attr]
        except OSError as exc:
            raise TlsNotConfigured(f"{prefix}{name}={path} cannot be read: {exc.strerror}") from None
    return contents[0], contents[1], contents[2]


@lru_cache(maxsize=64)
def tier_named_by(pem: bytes) -> Tier | None:
    """The tier a certificate was issued to (its ``spiffe://splitexit/<tier>`` URI), or None."""
    name = identity_of(pem)
    return Tier(name) if name in {tier.value for tier in Tier} else None


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class PeerTierCheck(grpc.aio.ServerInterceptor):
    """``Tier`` calls only from the tiers allowed to call this one, by the tier their certificate names."""

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.allowed = CALLERS[tier]

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(TIER_SERVICE):
            return handler
        return _guarded(handler, self._refusal)

    def _refusal(self, context: grpc.aio.ServicerContext) -> str | None:
        """Why this caller may not call ``Tier`` (None: it may)."""
        pems = context.auth_context().get("x509_pem_cert", [])
        caller = tier_named_by(pems[0]) if pems else None
        if caller in self.allowed:
            return None
        allowed = " or the ".join(sorted(t.value for t in self.allowed))
        who = f"a certificate issued to the {caller.value}" if caller else "no tier certificate"
        return f"the {self.tier.value} resumes samples only for the {allowed}; this caller presented {who}"


def _guarded(
    handler: grpc.RpcMethodHandler, refusal: Callable[[grpc.aio.ServicerContext], str | None]
) -> grpc.RpcMethodHandler:
    """``handler`` that first aborts PERMISSION_DENIED when ``refusal`` gives a reason."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: object, context: grpc.aio.ServicerContext) -> object:
            reason = refusal(context)
            if reason:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)
    inner_stream = handler.stream_stream

    async def stream(requests: object, context: grpc.aio.ServicerContext):  # noqa: ANN202 - an async generator
        reason = refusal(context)
        if reason:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        async for answer in inner_stream(requests, context):
            yield answer

    return grpc.stream_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)
