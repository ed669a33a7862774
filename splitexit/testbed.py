"""Three tiers as three local processes on loopback, for the demo, the tests and benchmarks.

Starts the cloud, then the edge, then the device (``splitexit serve TIER``),
each configured only through its ``SPLITEXIT_<TIER>_*`` environment, waits for
each to report SERVING on ``grpc.health.v1``, and stops them with SIGTERM.
:class:`TierChain` (start in that order, stop, clean up after a failed start)
and :class:`TierLaunch` (one tier's command, environment, health address and
log) are what the namespace testbed (:mod:`splitexit.netns`) is built on too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Self

from splitexit.client import TLS, is_serving
from splitexit.shared.settings import tier_env_prefix
from splitexit.shared.tiers import TIERS, Tier

START_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now (the OS's pick)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass(kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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
    health_tls: TLS | bool = False  # how the SERVING check connects

    def start(self, append_log: bool = False) -> TierProcess:
        """Start ``splitexit serve TIER`` and wait until it reports SERVING (stopping it if it does not).

        The log starts afresh unless ``append_log`` (a restart keeps what the last run wrote).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [*self.command_prefix, sys.executable, "-m", "splitexit", "serve", self.tier.value]
        with self.log_path.open("ab" if append_log else "wb") as log:
            process = subprocess.Popen(command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        running = TierProcess(tier=self.tier, address=self.address, process=process, log_path=self.log_path)
        try:
            _wait_serving(running, self.health_tls)
        except BaseException:
            running.stop()
            raise
        return running


def _wait_serving(tier: TierProcess, tls: TLS | bool) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if tier.process.poll() is not None:
            raise RuntimeError(f"the {tier.tier.value} exited at start:\n{tier.log_path.read_text()[-3000:]}")
        if asyncio.run(is_serving(tier.address, tls=tls)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the {tier.tier.value} did not report SERVING within {START_TIMEOUT_S:.0f} s")


def wait_workers(metrics_port: int, workers: int) -> None:
    """Wait until every worker of a pool serves its ``/metrics`` (ports ``metrics_port`` on; each worker
    starts them once it is SERVING): the pool's health answers as soon as its first worker does."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for port in range(metrics_port, metrics_port + workers):
        while True:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker metrics on port {port} not up within {START_TIMEOUT_S:.0f} s") from None
                time.sleep(0.1)


def tier_env(
    tier: Tier,
    host: str,
    port: int,
    next_address: str | None,
    settings: dict[str, str],
    log_dir: Path,
    *,
    metrics_port: int = 0,
    http_port: int = 0,
    tls_dir: Path | None = None,
) -> dict[str, str]:
    """A tier's ``SPLITEXIT_<TIER>_*`` variables: where it listens, its next tier, then ``settings`` over them.

    ``/metrics`` and the device's HTTP gateway are off where their port is 0; a
    device keeps its learned policy state in ``log_dir/policy-state`` unless
    ``settings`` name a ``state_dir``, so a fresh ``log_dir`` (as tests use)
    means policies that start from nothing. Nothing balances over a testbed, so
    a tier stops without a drain grace unless ``settings`` set ``drain_grace_s``.
    With ``tls_dir`` (what ``splitexit certs`` writes) the tiers speak mutual TLS;
    without, plaintext, as loopback and private namespaces allow (each tier warns).
    """
    prefix = tier_env_prefix(tier)
    env = {f"{prefix}PORT": str(port), f"{prefix}HOST": host, f"{prefix}METRICS_PORT": str(metrics_port)}
    env[f"{prefix}DRAIN_GRACE_S"] = "0"
    env.update(tls_env(tier, tls_dir))
    if next_address is not None:
        env[f"{prefix}NEXT_TIER"] = next_address
    if tier is Tier.DEVICE:
        env[f"{prefix}HTTP_PORT"] = str(http_port)
        env[f"{prefix}STATE_DIR"] = str(log_dir / "policy-state")
    env.update({f"{prefix}{name.upper()}": value for name, value in settings.items()})
    return env


@dataclass(frozen=True)
class PkiFiles:
    """One party's certificate and key, and the CA, in a folder ``splitexit certs`` wrote."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, tls_dir: Path, name: str) -> PkiFiles:
        from splitexit.certs import credential_in  # cryptography: only where TLS is asked for

        own = credential_in(tls_dir, name)
        return cls(credential_in(tls_dir, "ca").cert, own.cert, own.key)

    def client_tls(self) -> TLS:
        return TLS.from_files(self.ca, self.cert, self.key)


def tls_env(tier: Tier, tls_dir: Path | None) -> dict[str, str]:
    """A tier's TLS variables: its certificate, key and the CA from ``tls_dir``; plaintext if None."""
    prefix = tier_env_prefix(tier)
    if tls_dir is None:
        return {f"{prefix}PLAINTEXT": "true"}
    files = PkiFiles.of(tls_dir, tier.value)
    return {
        f"{prefix}TLS_CERT_FILE": str(files.cert),
        f"{prefix}TLS_KEY_FILE": str(files.key),
        f"{prefix}TLS_CA_FILE": str(files.ca),
    }


def start_tier(tier: Tier, port: int, next_address: str | None, settings: dict[str, str], log_dir: Path) -> TierProcess:
    """Start ``splitexit serve TIER`` on loopback, configured by :func:`tier_env`, and wait until it reports SERVING.

    Its log is ``log_dir/<tier>.log``.
    """
    env = tier_env(tier, LOOPBACK, port, next_address, settings, log_dir)
    return TierLaunch(tier=tier, address=f"{LOOPBACK}:{port}", env=env, log_path=log_dir / f"{tier.value}.log").start()


class TierChain:
    """What every testbed does: start the cloud, the edge, the device, each once the last is SERVING; stop them all.

    A subclass says how each tier starts (:meth:`launch`) and keeps ``processes``
    (the running tiers) and ``launches`` (how each was started, to start it again).
    """

    processes: dict[Tier, TierProcess]
    launches: dict[Tier, TierLaunch]

    def launch(self, tier: Tier) -> TierLaunch:
        """How ``tier`` starts in this testbed."""
        raise NotImplementedError

    def start_chain(self) -> None:
        """Start the cloud, then the edge, then the device, keeping how each was started."""
        for tier in reversed(TIERS):
            self.launches[tier] = self.launch(tier)
            self.processes[tier] = self.launches[tier].start()

    def __enter__(self) -> Self:
        try:
            self.start_chain()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop and forget every tier: the device first (it drains), then the edge and the cloud.

        SIGTERM, and SIGKILL for a tier that has not exited within ``timeout_s``.
        """
        for tier in TIERS:
            running = self.processes.pop(tier, None)
            if running is not None:
                running.stop(timeout_s)


@dataclass
class Testbed(TierChain):
    """``with Testbed(ports) as bed: ... bed.device_address ...``.

    ``settings`` maps a tier to extra settings (field name -> value as a string),
    exported as that tier's env vars. The device's HTTP gateway is off unless
    ``http_port`` is set, and a tier serves ``/metrics`` only if ``metrics_ports`` names it.
    With ``tls_dir`` (what ``splitexit certs`` writes) every port and link speaks
    TLS, mutual between tiers; without, the tiers serve plaintext on loopback.
    """

    __test__ = False  # not a pytest test class, despite the name

    ports: dict[Tier, int] = field(default_factory=lambda: {Tier.DEVICE: 50051, Tier.EDGE: 50052, Tier.CLOUD: 50053})
    settings: dict[Tier, dict[str, str]] = field(default_factory=dict)
    _: KW_ONLY
    http_port: int = 0
    metrics_ports: dict[Tier, int] = field(default_factory=dict)
    log_dir: Path = Path(".cache/logs")
    tls_dir: Path | None = None
    processes: dict[Tier, TierProcess] = field(default_factory=dict)
    launches: dict[Tier, TierLaunch] = field(default_factory=dict, init=False, repr=False)

    @property
    def client_tls(self) -> TLS | bool:
        """How a client connects: with the ``client`` certificate when the testbed speaks TLS."""
        return False if self.tls_dir is None else PkiFiles.of(self.tls_dir, "client").client_tls()

    @property
    def device_address(self) -> str:
        return self.processes[Tier.DEVICE].address

    def launch(self, tier: Tier) -> TierLaunch:
        """On loopback, at its port in ``ports``; its next tier at that tier's port."""
        next_address = f"{LOOPBACK}:{self.ports[tier.next]}" if tier.next else None
        settings = self.settings.get(tier, {})
        ports = {"metrics_port": self.metrics_ports.get(tier, 0), "http_port": self.http_port}
        env = tier_env(
            tier, LOOPBACK, self.ports[tier], next_address, settings, self.log_dir, **ports, tls_dir=self.tls_dir
        )
        address, log = f"{LOOPBACK}:{self.ports[tier]}", self.log_dir / f"{tier.value}.log"
        return TierLaunch(tier=tier, address=address, env=env, log_path=log, health_tls=self.client_tls)
