"""The cloud tier alone with 1 and with 2 worker processes on one port (``workers``), side by side in one run.

Each pool is fed as the edge feeds the cloud, by links, here :data:`LINKS` of
them on connections of their own, 64 samples in flight in all: the kernel gives
each connection to one worker, so a pool is spread over connections (as several
edge processes or replicas would hold), never over the messages of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from bench.rates import link_rate
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import LOOPBACK, TierLaunch, free_port, tier_env, wait_workers

POOLS = (1, 2)
LINKS = 4
IN_FLIGHT = 64


def cloud_workers_rates(requests: Sequence[pb.ContinueRequest], log_dir: Path) -> dict[str, float]:
    """Samples/s of the cloud tier alone, by its number of workers."""
    rates = {}
    for workers in POOLS:
        port, metrics_port = free_port(), free_port()
        env = tier_env(Tier.CLOUD, LOOPBACK, port, None, {"workers": str(workers)}, log_dir, metrics_port=metrics_port)
        pool = TierLaunch(Tier.CLOUD, f"{LOOPBACK}:{port}", env, log_dir / f"cloud-{workers}-workers.log").start()
        try:
            wait_workers(metrics_port, workers)
            asyncio.run(link_rate(pool.address, requests[:200], IN_FLIGHT, LINKS))  # warm up every worker
            rates[str(workers)] = asyncio.run(link_rate(pool.address, requests, IN_FLIGHT, LINKS))
        finally:
            pool.stop()
    return rates
