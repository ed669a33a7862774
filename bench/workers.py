"""The cloud tier alone with 1 and with 2 worker processes on one port (``workers``), side by side in one run.

Each pool is fed as the edge feeds the cloud, by links: :data:`FEEDERS` client
processes (so that one Python client does not cap the rate), each with
:data:`LINKS` links on connections of their own, 64 samples in flight in all.
The kernel gives each connection to one worker, so a pool is spread over
connections (as several edge processes or replicas would hold), never over the
messages of one; how evenly it spread is read from each worker's ``/metrics``.
Both pools run from the start, and the rounds alternate between them
(:data:`ROUNDS` each), so a machine that slows down for a while slows both: the
ratio is the median of the rounds' ratios. A round's rate is every answered sample
over the span from the first feeder's start to the last one's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.rates import link_rate
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import LOOPBACK, TierLaunch, free_port, tier_env, wait_workers

POOLS = (1, 2)
FEEDERS = 2
LINKS = 2  # per feeder
IN_FLIGHT = 64
ROUNDS = 3  # per pool, alternating


def cloud_workers_rates(requests: Sequence[pb.ContinueRequest], log_dir: Path) -> dict[str, Any]:
    """Samples/s of the cloud tier alone in each round, by its number of workers; the samples each worker answered
    over all rounds; the median of the rounds' ratios of 2 workers to 1."""
    rates: dict[str, list[float]] = {str(workers): [] for workers in POOLS}
    answered: dict[str, list[float]] = {}
    with contextlib.ExitStack() as pools:
        started = {workers: _start_pool(workers, log_dir, pools) for workers in POOLS}
        before = {workers: [_answered(port) for port in ports] for workers, (_, ports) in started.items()}
        for _ in range(ROUNDS):
            for workers, (address, _) in started.items():
                rates[str(workers)].append(fed_rate(address, requests))
        for workers, (_, ports) in started.items():
            answered[str(workers)] = [_answered(port) - then for port, then in zip(ports, before[workers])]
    ratios = [two / one for one, two in zip(rates["1"], rates["2"])]
    return {
        "feeders": FEEDERS,
        "links_per_feeder": LINKS,
        "in_flight": IN_FLIGHT,
        "rates": rates,
        "answered_by_worker": answered,
        "ratio": statistics.median(ratios),
    }


def _start_pool(workers: int, log_dir: Path, pools: contextlib.ExitStack) -> tuple[str, list[int]]:
    """Start a cloud pool of ``workers`` (stopped when ``pools`` closes): its address and its workers' metrics
    ports."""
    port, metrics_port = free_port(), free_port()
    env = tier_env(Tier.CLOUD, LOOPBACK, port, None, {"workers": str(workers)}, log_dir, metrics_port=metrics_port)
    log_path = log_dir / f"cloud-{workers}-workers.log"
    pool = TierLaunch(tier=Tier.CLOUD, address=f"{LOOPBACK}:{port}", env=env, log_path=log_path).start()
    pools.callback(pool.stop)
    wait_workers(metrics_port, workers)
    return pool.address, list(range(metrics_port, metrics_port + workers))


def _answered(metrics_port: int) -> float:
    """The samples one worker has answered so far (its ``splitexit_requests_total``, every method and status)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5) as page:
        families = text_string_to_metric_families(page.read().decode())
        return sum(
            sample.value
            for family in families
            if family.name == "splitexit_requests"
            for sample in family.samples
            if sample.name == "splitexit_requests_total"
        )


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
