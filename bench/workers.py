"""The cloud tier alone with 1 and with 2 worker processes on one port (``workers``), side by side in one run.

Each pool is fed as the edge feeds the cloud, by links: :data:`FEEDERS` client
processes (so that one Python client does not cap the rate), each with
:data:`LINKS` links on connections of their own, 64 samples in flight in all.
The kernel gives each connection to one worker, so a pool is spread over
connections (as several edge processes or replicas would hold), never over the
messages of one. The rate is every answered sample over the span from the
first feeder's start to the last one's end.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.rates import link_rate
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import LOOPBACK, TierLaunch, free_port, tier_env, wait_workers

POOLS = (1, 2)
FEEDERS = 2
LINKS = 2  # per feeder
IN_FLIGHT = 64


def cloud_workers_rates(requests: Sequence[pb.ContinueRequest], log_dir: Path) -> dict[str, float]:
    """Samples/s of the cloud tier alone, by its number of workers."""
    rates = {}
    for workers in POOLS:
        port, metrics_port = free_port(), free_port()
        env = tier_env(Tier.CLOUD, LOOPBACK, port, None, {"workers": str(workers)}, log_dir, metrics_port=metrics_port)
        pool = TierLaunch(
            tier=Tier.CLOUD, address=f"{LOOPBACK}:{port}", env=env, log_path=log_dir / f"cloud-{workers}-workers.log"
        ).start()
        try:
            wait_workers(metrics_port, workers)
            rates[str(workers)] = fed_rate(pool.address, requests)
        finally:
            pool.stop()
    return rates


def fed_rate(address: str, requests: Sequence[pb.ContinueRequest]) -> float:
    """Samples/s answered to :data:`FEEDERS` processes sending their shares of ``requests`` at once."""
    shares = [list(requests[i::FEEDERS]) for i in range(FEEDERS)]
    with ProcessPoolExecutor(FEEDERS, mp_context=multiprocessing.get_context("spawn")) as feeders:
        spans = list(feeders.map(_feed, [address] * FEEDERS, shares))
    return len(requests) / (max(end for _, end in spans) - min(start for start, _ in spans))


def _feed(address: str, share: list[pb.ContinueRequest]) -> tuple[float, float]:
    """One feeder: warm up, then send ``share``; when it started and ended (wall clock, shared by the processes)."""
    asyncio.run(link_rate(address, share[:50], IN_FLIGHT // FEEDERS, LINKS))
    started = time.time()
    asyncio.run(link_rate(address, share, IN_FLIGHT // FEEDERS, LINKS))
    return started, time.time()
