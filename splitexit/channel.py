"""How the SDK reaches a device: a gRPC channel with retries, message limits and TLS, and its health check.

:func:`open_channel` is what :class:`~splitexit.client.AsyncClient` talks on;
:func:`is_serving` asks the standard ``grpc.health.v1`` service of any tier.
"""

from __future__ import annotations

import json
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

MAX_MESSAGE_BYTES = 64 << 20
HEALTH_CHECK = "/grpc.health.v1.Health/Check"  # the standard health service's unary method


@dataclass(frozen=True)
class TLS:
    """A TLS channel: PEM bytes of the CA to trust (None: the system's), and a client certificate for mutual TLS."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    _: KW_ONLY
    server_name: str | None = None  # the name the server's certificate must carry, if not the address's host

    @classmethod
    def from_files(cls, root: Path | None = None, cert: Path | None = None, key: Path | None = None) -> TLS:
        def read(path: Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(root_certificates=read(root), certificate_chain=read(cert), private_key=read(key))


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
    """An asyncio channel to ``address``; ``retries`` (0: none, gRPC allows 4 at most) as :func:`service_config`."""
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
    credentials = grpc.ssl_channel_credentials(
        settings.root_certificates, settings.private_key, settings.certificate_chain
    )
    return grpc.aio.secure_channel(address, credentials, options=options)


async def is_serving(address: str, timeout_s: float = 1.0, tls: TLS | bool = False) -> bool:
    """True once the server at ``address`` answers its health check with SERVING."""
    async with open_channel(address, tls, retries=0) as channel:
        check = channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING
