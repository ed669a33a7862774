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
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from splitexit.device.http import create_app
from splitexit.device.servicer import DeviceServicer
from splitexit.device.settings import DeviceSettings

log = logging.getLogger(__name__)
GRACE_S = 5.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the device's ``run_tier`` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port fails the device at start with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def http_gateway(servicer: DeviceServicer, settings: DeviceSettings) -> Callable[[asyncio.Event], Awaitable[None]]:
    """Bind the HTTP port now; the returned coroutine serves it until ``stop`` is set.

    Pass it to ``run_tier(..., also_run=[...])``. If the HTTP server ends on
    its own, it sets ``stop`` so the whole device goes down with it.
    """
    sock = _listen(settings.host, settings.http_port)
    app = create_app(servicer, settings)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,  # keep the device's logging as it is
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACE_S,
    )

    async def serve(stop: asyncio.Event) -> None:
        server = _EmbeddedServer(config)

        async def run_server() -> None:
            try:
                await server.serve(sockets=[sock])
            except SystemExit as exc:  # uvicorn exits on startup failures; end this task instead
                raise RuntimeError(f"the device's HTTP gateway failed to start (exit {exc.code})") from None

        serving = asyncio.create_task(run_server())
        stopping = asyncio.create_task(stop.wait())
        log.info("device HTTP gateway on http://%s:%d", settings.host, settings.http_port)
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():  # the server ended by itself: take the device down too
            stopping.cancel()
            stop.set()
        app.state.serving = False
        server.should_exit = True
        await serving

    return serve
