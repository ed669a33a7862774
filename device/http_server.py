"""The device's HTTP gateway as a server: uvicorn inside the device's event loop, started and stopped with gRPC.

:func:`http_gateway` binds the port at once (so a taken port fails the device
at start with a clear message) and returns the coroutine that serves the app of
:mod:`splitexit.device.http` until the device stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from splitexit.device.auth import Tokens
from splitexit.device.http import create_app
from splitexit.device.servicer import DeviceServicer
from splitexit.device.settings import DeviceSettings
from splitexit.shared.lifecycle import Helper, Lifecycle

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the device's ``run_tier`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port fails the device at start with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that names it, and
    # without it Nagle's algorithm and the client's delayed ACK hold every answer back ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot bind the device's HTTP gateway to {host}:{port} ({exc.strerror}); "
            "set SPLITEXIT_DEVICE_HTTP_PORT to a free port, or 0 to turn the gateway off"
        ) from None
    sock.listen(1024)  # connections wait in the backlog until uvicorn accepts them
    sock.setblocking(False)
    return sock


def http_gateway(servicer: DeviceServicer, settings: DeviceSettings, tokens: Tokens) -> Helper:
    """Bind the HTTP port now; the returned coroutine serves it until the device stops.

    Pass it to ``run_tier(..., helpers=[...])``. While the device drains,
    ``/healthz`` answers 503 and requests are still served; once it stops,
    accepted requests finish. If the HTTP server ends on its own, the whole
    device goes down with it.
    """
    sock = _listen(settings.host, settings.http_port)
    app = create_app(servicer, settings, tokens)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,  # keep the device's logging as it is
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        **(
            {} if settings.plaintext else {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
        ),
    )

    async def serve(lifecycle: Lifecycle) -> None:
        server = _EmbeddedServer(config)

        async def run_server() -> None:
            try:
                await server.serve(sockets=[sock])
            except SystemExit as exc:  # uvicorn exits on startup failures; end this task instead
                raise RuntimeError(f"the device's HTTP gateway failed to start (exit {exc.code})") from None

        serving = asyncio.create_task(run_server())
        draining = asyncio.create_task(lifecycle.draining.wait())
        scheme = "http" if settings.plaintext else "https"
        log.info("device HTTP gateway on %s://%s:%d", scheme, settings.host, settings.http_port)
        await asyncio.wait({serving, draining}, return_when=asyncio.FIRST_COMPLETED)
        app.state.serving = False  # /healthz: 503
        if not draining.done():  # the server ended by itself: take the device down too
            draining.cancel()
            lifecycle.stop_requested.set()
        else:
            await asyncio.wait(
                {serving, asyncio.create_task(lifecycle.stopping.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        server.should_exit = True
        await serving

    return serve
