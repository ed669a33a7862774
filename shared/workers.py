"""Several processes serving one edge or cloud tier on one port, so that the tier uses the cores it is given.

With ``workers: N > 1`` the ``splitexit serve TIER`` process starts N worker
processes, each ``splitexit serve TIER`` configured by the same environment and
YAML with ``workers: 1``, and serves nothing itself. Every worker binds the same
gRPC port with SO_REUSEPORT (gRPC's default on Linux, the multi-core pattern of
gRPC Python's ``multiprocessing`` example): the kernel hands each new
connection to one of them, so the load spreads over connections, not over the
messages of one connection. Worker ``i`` (0-based) serves its own ``/metrics``
on ``metrics_port + i``: each worker's counters stay exact and a scrape names
the worker it came from.

SIGTERM or SIGINT to the pool is passed to every worker, each drains as one
tier does (:mod:`splitexit.shared.server`), and the pool exits with the first
non-zero exit code of a worker, else 0. A worker that exits on its own (a
package that failed its checks) stops the others. A pool that dies without
passing anything on (SIGKILL, the OOM killer) takes its workers with it: each
gets SIGTERM from the kernel when its parent dies (Linux's ``PR_SET_PDEATHSIG``)
and drains, so none is left holding the port.

The device is refused ``workers > 1`` (see :class:`~splitexit.shared.settings.TierSettings`):
its policies learn online and keep one state in ``state_dir``, which separate
processes would each learn and overwrite on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys

from splitexit.shared.settings import TierSettings, tier_env_prefix

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often the pool looks whether a worker ended
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _terminated_with_parent() -> None:
    """In a new worker, before it runs: ask the kernel for SIGTERM when the pool that started it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def worker_env(settings: TierSettings, index: int) -> dict[str, str]:
    """Worker ``index``'s environment: this one, with one worker per process and its own metrics port."""
    prefix = tier_env_prefix(settings.tier)
    metrics_port = settings.metrics_port + index if settings.metrics_port else 0
    return {**os.environ, f"{prefix}WORKERS": "1", f"{prefix}METRICS_PORT": str(metrics_port)}


async def serve_workers(settings: TierSettings) -> None:
    """Run ``settings.workers`` processes of this tier on its port until SIGTERM/SIGINT, then drain them all."""
    tier = settings.tier.value
    command = [sys.executable, "-m", "splitexit", "serve", tier]
    workers = [
        subprocess.Popen(command, env=worker_env(settings, index), preexec_fn=_terminated_with_parent)
        for index in range(settings.workers)
    ]
    for index, worker in enumerate(workers):
        log.info("%s worker %d: pid %d on %s", tier, index, worker.pid, settings.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and all(worker.poll() is None for worker in workers):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)
    for worker in workers:  # stopped, or one ended on its own: the pool ends with it
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    codes = [await asyncio.to_thread(worker.wait) for worker in workers]
    failed = [code for code in codes if code != 0]
    if failed:
        sys.exit(f"{tier}: a worker exited with code {failed[0]}")
    log.info("%s: all %d workers stopped", tier, len(workers))
