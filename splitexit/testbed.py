"""Three tiers as three local processes on loopback, for the demo, the tests and benchmarks.

Starts the cloud, then the edge, then the device (``splitexit serve TIER``),
each configured only through its ``SPLITEXIT_<TIER>_*`` environment, waits for
each to report SERVING on ``grpc.health.v1``, and stops them with SIGTERM.
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


def free_port() -> int:
    """A TCP port free on loopback right now (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TierProcess:
    tier: Tier
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not drained within 15 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_tier(
    tier: Tier, port: int, next_address: str | None, settings: dict[str, str], log_dir: Path
) -> TierProcess:
    """Start ``splitexit serve TIER`` on loopback and wait until it reports SERVING.

    Its log is ``log_dir/<tier>.log``; a device keeps its learned policy state in
    ``log_dir/policy-state`` unless ``settings`` name a ``state_dir``, so a
    fresh ``log_dir`` (as tests use) means policies that start from nothing.
    """
    prefix = tier_env_prefix(tier)
    env = {**os.environ, f"{prefix}PORT": str(port), f"{prefix}HOST": "127.0.0.1", f"{prefix}METRICS_PORT": "0"}
    env[f"{prefix}DRAIN_GRACE_S"] = "0"  # nothing balances over a local testbed: stop at once unless told otherwise
    if next_address is not None:
        env[f"{prefix}NEXT_TIER"] = next_address
    if tier is Tier.DEVICE:
        env[f"{prefix}HTTP_PORT"] = "0"  # no HTTP gateway unless the settings ask for one
        env[f"{prefix}STATE_DIR"] = str(log_dir / "policy-state")
    env.update({f"{prefix}{name.upper()}": value for name, value in settings.items()})
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{tier.value}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "splitexit", "serve", tier.value], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    running = TierProcess(tier, port, process, log_path)
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
                next_address = f"127.0.0.1:{self.ports[next_tier]}" if next_tier else None
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
        for tier in (Tier.DEVICE, Tier.EDGE, Tier.CLOUD):
            running = self.processes.pop(tier, None)
            if running is not None:
                running.stop()
