"""Where a served sample's CPU goes: each process of a load (the client, the device, the edge, the cloud) apart.

A process's CPU is its user + system time in ``/proc/<pid>/stat`` (Linux), all
its threads together: event loop, onnxruntime, gRPC's own. Beside it,
:func:`bare_cpu_us` gives what the same work costs bare: onnxruntime on each
tier's blocks at one batch size, and decoding the inputs, in this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import numpy as np

from bench.paths import PathInputs
from splitexit.policies.chain import Chain
from splitexit.shared.tiers import TIERS, Tier

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds that process ``pid`` has used so far (every thread); to the clock tick (10 ms),
    but to the ns for this process."""
    if pid == os.getpid():
        return time.process_time()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_us_per_sample(pids: Mapping[str, int], load: Callable[[], int]) -> dict[str, float]:
    """µs of CPU each of ``pids`` (name -> pid) used per sample while ``load()`` ran (it returns the samples it
    had answered)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    answered = load()
    return {name: 1e6 * (cpu_seconds(pid) - before[name]) / answered for name, pid in pids.items()}


def bare_cpu_us(inputs: PathInputs, batch: int, repeats: int) -> dict[str, float]:
    """CPU µs per sample, bare in this process: decoding an input (``decode``), and each tier's blocks on the way
    to the cloud at ``batch`` samples per call (``device``, ``edge``, ``cloud``)."""
    raw = (list(inputs.raw) * (batch // len(inputs.raw) + 1))[:batch]
    for value in raw:  # warm: Pillow's first decodes cost several times the later ones
        inputs.prepare(value)
    started = time.process_time()
    x = np.concatenate([inputs.prepare(value) for value in raw])
    report = {"decode": 1e6 * (time.process_time() - started) / batch}
    for tier, (first, last) in parts_to_cloud(inputs.tiers).items():
        x = _timed(inputs, x, first, last, repeats, report, tier.value)
    return report


def parts_to_cloud(tiers: Chain) -> dict[Tier, tuple[int, int]]:
    """The blocks each tier runs of a sample sent all the way to the cloud: (first, last)."""
    parts, first = {}, 1
    for tier in TIERS:
        last = tiers.hosted[tier].last
        parts[tier], first = (first, last), last + 1
    return parts


def _timed(
    inputs: PathInputs, x: np.ndarray, first: int, last: int, repeats: int, report: dict[str, float], name: str
) -> np.ndarray:
    """Run blocks ``first``..``last`` on ``x`` ``repeats`` times; its CPU µs per sample in ``report[name]``; the
    activation after ``last``."""
    inputs.chain.run(x, first, last)  # warm
    started = time.process_time()
    for _ in range(repeats):
        activation = inputs.chain.run(x, first, last)[1]
    report[name] = 1e6 * (time.process_time() - started) / (repeats * len(x))
    return activation
