"""Three tiers as three local processes on loopback, for the demo, the tests and benchmarks.

Starts the cloud, then the edge, then the device (``splitexit serve TIER``),
each configured only through its ``SPLITEXIT_<TIER>_*`` environment, waits for
each to report SERVING on ``grpc.health.v1``, and stops them with SIGTERM.
:class:`TierLaunch`, :func:`tier_env` and :func:`stop_tiers` are what the
namespace testbed (:mod:`splitexit.netns`) starts and stops its tiers with too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from splitexit.client import is_serving
from splitexit.shared.settings import tier_env_prefix
from splitexit.shared.tiers import Tier

START_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now (the OS's pick)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class TierProcess:
    """One started tier: its process, the address this process reaches its gRPC at, its log."""

    tier: Tier
    address: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (and SIGCONT, should it be paused), then SIGKILL if it has not drained within ``timeout_s``."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        self.process.send_signal(signal.SIGCONT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class TierLaunch:
    """How to start one tier, kept so that it can be started again the same way.

    ``env`` is its ``SPLITEXIT_<TIER>_*`` settings (on top of this process's
    environment), ``address`` where this process reaches its gRPC for the
    SERVING check, ``command_prefix`` what runs the command (e.g.
    ``ip netns exec NS``).
    """

    tier: Tier
    address: str
    env: dict[str, str]
    log_path: Path
    command_prefix: tuple[str, ...] = ()

    def start(self, append_log: bool = False) -> TierProcess:
        """Start ``splitexit serve TIER`` and wait until it reports SERVING (stopping it if it does not).

        The log starts afresh unless ``append_log`` (a restart keeps what the last run wrote).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [*self.command_prefix, sys.executable, "-m", "splitexit", "serve", self.tier.value]
        with self.log_path.open("ab" if append_log else "wb") as log:
            process = subprocess.Popen(command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        running = TierProcess(self.tier, self.address, process, self.log_path)
        try:
            _wait_serving(running)
        except BaseException:
            running.stop()
            raise
        return running


def _wait_serving(tier: TierProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if tier.process.poll() is not None:
            raise RuntimeError(f"the {tier.tier.value} exited at start:\n{tier.log_path.read_text()[-3000:]}")
        if asyncio.run(is_serving(tier.address)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the {tier.tier.value} did not report SERVING within {START_TIMEOUT_S:.0f} s")


def tier_env(
    tier: Tier, host: str, port: int, next_address: str | None, settings: dict[str, str], log_dir: Path
) -> dict[str, str]:
    """A tier's ``SPLITEXIT_<TIER>_*`` variables: where it listens, its next tier, then ``settings`` over them.

    Metrics and the device's HTTP gateway are off unless ``settings`` name their
    ports; a device keeps its learned policy state in ``log_dir/policy-state``
    unless ``settings`` name a ``state_dir``, so a fresh ``log_dir`` (as tests
    use) means policies that start from nothing.
    """
    prefix = tier_env_prefix(tier)
    env = {f"{prefix}PORT": str(port), f"{prefix}HOST": host, f"{prefix}METRICS_PORT": "0"}
    if next_address is not None:
        env[f"{prefix}NEXT_TIER"] = next_address
    if tier is Tier.DEVICE:
        env[f"{prefix}HTTP_PORT"] = "0"
        env[f"{prefix}STATE_DIR"] = str(log_dir / "policy-state")
    env.update({f"{prefix}{name.upper()}": value for name, value in settings.items()})
    return env


def start_tier(
    tier: Tier, port: int, next_address: str | None, settings: dict[str, str], log_dir: Path
) -> TierProcess:
    """Start ``splitexit serve TIER`` on loopback, configured by :func:`tier_env`, and wait until it reports SERVING.

    Its log is ``log_dir/<tier>.log``.
    """
    env = tier_env(tier, LOOPBACK, port, next_address, settings, log_dir)
    return TierLaunch(tier, f"{LOOPBACK}:{port}", env, log_dir / f"{tier.value}.log").start()


def stop_tiers(processes: dict[Tier, TierProcess], timeout_s: float = 15.0) -> None:
    """Stop and forget every tier in ``processes``: the device first (it drains), then the edge and the cloud."""
    for tier in (Tier.DEVICE, Tier.EDGE, Tier.CLOUD):
        running = processes.pop(tier, None)
        if running is not None:
            running.stop(timeout_s)


@dataclass
class Testbed:
    """``with Testbed(ports) as bed: ... bed.device_address ...``.

    ``settings`` maps a tier to extra settings (field name -> value as a string),
    exported as that tier's env vars. The device's HTTP gateway is off unless
    ``http_port`` is set, and a tier serves ``/metrics`` only if ``metrics_ports`` names it.
    """

    __test__ = False  # not a pytest test class, despite the name

    ports: dict[Tier, int] = field(default_factory=lambda: {Tier.DEVICE: 50051, Tier.EDGE: 50052, Tier.CLOUD: 50053})
    settings: dict[Tier, dict[str, str]] = field(default_factory=dict)
    http_port: int = 0
    metrics_ports: dict[Tier, int] = field(default_factory=dict)
    log_dir: Path = Path(".cache/logs")
    processes: dict[Tier, TierProcess] = field(default_factory=dict)

    @property
    def device_address(self) -> str:
        return self.processes[Tier.DEVICE].address

    def __enter__(self) -> Testbed:
        try:
            for tier, next_tier in ((Tier.CLOUD, None), (Tier.EDGE, Tier.CLOUD), (Tier.DEVICE, Tier.EDGE)):
                next_address = f"{LOOPBACK}:{self.ports[next_tier]}" if next_tier else None
                settings = self.settings.get(tier, {})
                if tier is Tier.DEVICE and self.http_port:
                    settings = {"http_port": str(self.http_port), **settings}
                if tier in self.metrics_ports:
                    settings = {"metrics_port": str(self.metrics_ports[tier]), **settings}
                self.processes[tier] = start_tier(tier, self.ports[tier], next_address, settings, self.log_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM the device first (it drains), then the edge and the cloud."""
        stop_tiers(self.processes)
