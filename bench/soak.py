"""A bounded soak: steady load for some minutes while every tier's memory and open descriptors are sampled.

A leak shows as resident memory or file descriptors that keep growing after
warm-up (the first samples, while caches, pools and connections fill). Read
from ``/proc/<pid>/status`` (VmRSS) and ``/proc/<pid>/fd`` of the tier
processes themselves.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from bench.steady_load import Outcome, steady_load
from splitexit.samples import LabelledImage


@dataclass(frozen=True)
class Usage:
    """One tier's footprint at one moment."""

    at_s: float  # seconds since the soak began
    rss_mb: float
    fds: int


def usage(pid: int, at_s: float) -> Usage:
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return Usage(at_s, rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")))


@dataclass(kw_only=True)
class SoakReport:
    seconds: float
    warmup_s: float
    outcomes: list[Outcome]
    usage: dict[str, list[Usage]] = field(default_factory=dict)  # tier -> samples in time order

    def growth(self) -> dict[str, dict[str, float]]:
        """Per tier: RSS (MB) and descriptors at the end of warm-up, and the most either grew after it."""
        report = {}
        for tier, samples in self.usage.items():
            settled = [s for s in samples if s.at_s >= self.warmup_s]
            base = settled[0]
            report[tier] = {
                "rss_mb_after_warmup": base.rss_mb,
                "rss_mb_growth": max(s.rss_mb for s in settled) - base.rss_mb,
                "fds_after_warmup": base.fds,
                "fds_growth": max(s.fds for s in settled) - base.fds,
            }
        return report


async def _sample(
    pids: dict[str, int], every_s: float, started: float, into: dict[str, list[Usage]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        for tier, pid in pids.items():
            into.setdefault(tier, []).append(usage(pid, time.monotonic() - started))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


async def _soak(
    address: str, pids: dict[str, int], images: list[LabelledImage], report: SoakReport, rate: float
) -> None:
    started, stop = time.monotonic(), asyncio.Event()
    sampler = asyncio.create_task(_sample(pids, report.seconds / 20, started, report.usage, stop))
    report.outcomes, _ = await steady_load(address, images, rate, report.seconds, deadline_s=2.0)
    stop.set()
    await sampler


def run_soak(
    address: str, pids: dict[str, int], images: list[LabelledImage], seconds: float, rate: float = 40.0
) -> SoakReport:
    """``rate`` requests per second to ``address`` for ``seconds``, sampling each tier 20 times; a third is warm-up."""
    report = SoakReport(seconds=seconds, warmup_s=seconds / 3, outcomes=[])
    asyncio.run(_soak(address, pids, images, report, rate))
    return report
