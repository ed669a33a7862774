"""A tier's phases, which the helpers that run beside its gRPC server (HTTP gateway, metrics) follow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Lifecycle:
    """``draining``: health says NOT_SERVING while requests are still served; then ``stopping``: nothing new
    is accepted. Signals set ``stop_requested``, and so does a helper that fails, to take the tier down."""

    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


Helper = Callable[[Lifecycle], Awaitable[None]]  # runs beside the gRPC server until ``stopping``


@dataclass
class Drain:
    """What a tier's drain waits for and tells: its open request streams, and that they must close."""

    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set: streams read no more requests
    open_streams: int = 0
