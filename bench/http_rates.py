"""HTTP latency and throughput of a JSON endpoint, from one client process (httpx)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
import numpy as np


async def http_latency(url: str, bodies: Sequence[dict[str, object]]) -> np.ndarray:
    """Seconds per request, one at a time."""
    seconds = []
    async with httpx.AsyncClient(timeout=60.0) as client:
        for body in bodies:
            started = time.perf_counter()
            (await client.post(url, json=body)).raise_for_status()
            seconds.append(time.perf_counter() - started)
    return np.array(seconds)


async def http_rate(url: str, bodies: Sequence[dict[str, object]], clients: int) -> float:
    """Requests/s with ``clients`` callers on their own connections, each sending its share in turn."""

    async def caller(share: Sequence[dict[str, object]]) -> None:
        async with httpx.AsyncClient(timeout=60.0) as client:
            for body in share:
                (await client.post(url, json=body)).raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(caller(bodies[i::clients]) for i in range(clients)))
    return len(bodies) / (time.perf_counter() - started)
