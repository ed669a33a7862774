"""Three tiers on three "hosts": Linux network namespaces joined by rate-shaped veth links.

As root, :class:`NetnsTestbed` creates one namespace per tier (names carry this
process's pid and an instance number), a veth link device ↔ edge and one
edge ↔ cloud, and a management veth from the root namespace to each tier. Every
link is a /30 of its own in ``10.X.0.0/16``, ``X`` derived from the pid and
unused in the root namespace; ``lo`` is up everywhere and nothing forwards
between links, so tier-to-tier traffic can only cross the tier-to-tier links,
while this process (in the root namespace) reaches each tier's gRPC, HTTP and
``/metrics`` on its management address.

A link profile sets a ``tbf`` qdisc on both ends of a tier-to-tier link (each
direction is shaped by its sender's egress). This kernel has no ``netem`` (nor
any qdisc that delays), so a link's propagation delay is a
:mod:`~splitexit.delay_proxy` instead: for a link named in ``delays``, a proxy
in the sending tier's namespace takes the tier's connections to its next tier
on loopback and forwards them over the link, each byte a one-way delay later
in each direction; its control port, on the sending tier's management address,
changes the delay at run time. No jitter is emulated.

Tiers run as ``ip netns exec NS python -m splitexit serve TIER`` (``ip`` execs,
so the process's pid is the tier's own), bound to ``0.0.0.0`` in their
namespace, and are started, checked for SERVING and stopped like the loopback
:class:`~splitexit.testbed.Testbed`'s.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from splitexit.delay_proxy import MAX_DELAY_MS, ProxyProcess
from splitexit.link_profiles import LINK_PROFILES
from splitexit.shared.tiers import TIERS, Tier
from splitexit.testbed import TierChain, TierLaunch, TierProcess, tier_env

GRPC_PORT = 50051
HTTP_PORT = 8080
METRICS_PORT = 9100
PROXY_PORT = 50061  # a delay proxy's listening port on loopback in the sending tier's namespace
PROXY_CONTROL_PORT = 9300  # and its control port, on that tier's management address
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"
COMMAND_TIMEOUT_S = 10.0
FIRST_OCTET, OCTETS = 32, 192  # links live in 10.X.0.0/16 with X in [32, 224)
_instances = itertools.count()
LINKS: dict[str, tuple[Tier, Tier]] = {tier.link: (tier, tier.next) for tier in TIERS if tier.next is not None}


class NetnsUnavailable(RuntimeError):
    """This process cannot build namespaces (not root, or no ``ip``/``tc``)."""


def unavailable_reason() -> str | None:
    """Why this process cannot build a netns testbed, or None if it can."""
    if os.geteuid() != 0:
        return f"network namespaces need root; this process runs as uid {os.geteuid()}"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH (Debian: apt-get install iproute2)"
    return None


def run_command(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an ``ip``/``tc`` command; a failure (if ``check``) raises with its stderr."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class LinkEnd:
    """One end of a veth: its namespace (None: the root one), interface name and IPv4 address."""

    namespace: str | None
    interface: str
    address: str

    def command(self, tool: str, *args: str) -> list[str]:
        """``ip ...`` or ``tc ...`` run in this end's namespace."""
        return [tool, *(["-n", self.namespace] if self.namespace else []), *args]

    def bytes_sent(self) -> int:
        """Bytes this end has transmitted so far (the kernel's counter)."""
        shown = run_command(self.command("ip", "-j", "-s", "link", "show", "dev", self.interface)).stdout
        return int(json.loads(shown)[0]["stats64"]["tx"]["bytes"])


@dataclass(frozen=True)
class Veth:
    """A veth pair; ``first`` is the sending tier's end (or the root's, for a management link)."""

    first: LinkEnd
    second: LinkEnd


class NamespaceNetwork:
    """A namespace per tier, the tier-to-tier veths and a management veth to each; :meth:`delete` undoes it."""

    def __init__(self, tag: str, octet: int) -> None:
        self.namespaces = {tier: f"sx{tag}-{tier.value}" for tier in TIERS}
        self.interface_prefix = f"sx{tag}"
        subnets = (f"10.{octet}.{k}" for k in itertools.count())
        self.links = {name: self._veth(a, b, next(subnets)) for name, (a, b) in LINKS.items()}
        self.management = {tier: self._veth(None, tier, next(subnets)) for tier in TIERS}
        self._namespaces_made: list[str] = []
        self._veths_made: list[LinkEnd] = []

    def _veth(self, first: Tier | None, second: Tier, subnet: str) -> Veth:
        """Interfaces are named ``sx<tag><this tier><peer tier>`` by initials, ``r`` for the root namespace."""
        initials = (first.value[0] if first else "r", second.value[0])
        namespace = (self.namespaces[first] if first else None, self.namespaces[second])
        ends = [
            LinkEnd(namespace[k], f"{self.interface_prefix}{initials[k]}{initials[1 - k]}", f"{subnet}.{k + 1}")
            for k in (0, 1)
        ]
        return Veth(*ends)

    def create(self) -> None:
        """Make the namespaces (``lo`` up) and the veths, addressed and up; what was made is recorded for
        :meth:`delete`."""
        for name in self.namespaces.values():
            run_command(["ip", "netns", "add", name])
            self._namespaces_made.append(name)
            run_command(["ip", "-n", name, "link", "set", "lo", "up"])
        for veth in [*self.links.values(), *self.management.values()]:
            first, second = veth.first, veth.second
            peer = ["peer", "name", second.interface, *(["netns", second.namespace] if second.namespace else [])]
            run_command(first.command("ip", "link", "add", first.interface, "type", "veth", *peer))
            self._veths_made.append(first)
            for end in (first, second):
                run_command(end.command("ip", "addr", "add", f"{end.address}/30", "dev", end.interface))
                run_command(end.command("ip", "link", "set", end.interface, "up"))

    def delete(self) -> None:
        """Delete every veth and namespace made so far, newest first; what is already gone is skipped."""
        while self._veths_made:
            end = self._veths_made.pop()
            run_command(end.command("ip", "link", "del", end.interface), check=False)
        while self._namespaces_made:
            run_command(["ip", "netns", "del", self._namespaces_made.pop()], check=False)

    def ends(self, link: str) -> tuple[LinkEnd, LinkEnd]:
        """Both ends of ``device-edge`` or ``edge-cloud``, the sender's first."""
        if link not in self.links:
            raise ValueError(f"no link {link!r}; the links are {', '.join(self.links)}")
        return self.links[link].first, self.links[link].second

    def shape(self, link: str, profile: str) -> None:
        """Put the profile's ``tbf`` on both ends of a tier-to-tier link (``none``: remove any)."""
        shaping = LINK_PROFILES[profile]
        for end in self.ends(link):
            if shaping is None:  # deleting the qdisc of an unshaped link fails, harmlessly
                run_command(end.command("tc", "qdisc", "del", "dev", end.interface, "root"), check=False)
            else:
                run_command(end.command("tc", "qdisc", "replace", "dev", end.interface, "root", *shaping.tbf()))

    def set_link(self, link: str, up: bool) -> None:
        """``ip link set ... up`` or ``down`` on both ends of a tier-to-tier link."""
        for end in self.ends(link):
            run_command(end.command("ip", "link", "set", end.interface, "up" if up else "down"))


def free_octet(seed: int) -> int:
    """The first ``X`` from one derived from ``seed`` whose ``10.X.0.0/16`` no route in the root namespace touches."""
    routes = json.loads(run_command(["ip", "-4", "-j", "route", "show", "table", "all"]).stdout)
    used = [ipaddress.ip_network(route["dst"], strict=False) for route in routes if route["dst"] != "default"]
    for step in range(OCTETS):
        octet = FIRST_OCTET + (seed + step) % OCTETS
        if not any(network.overlaps(ipaddress.ip_network(f"10.{octet}.0.0/16")) for network in used):
            return octet
    raise RuntimeError("every 10.X.0.0/16 the testbed could use is routed in the root namespace already")


@dataclass
class NetnsTestbed(TierChain):
    """``with NetnsTestbed(link="4g") as bed: ... bed.device_address ...``, as root.

    ``link`` and ``backhaul`` name the :data:`LINK_PROFILES` of the device-edge and
    edge-cloud links; ``delays`` maps a link to the one-way delay in ms a delay
    proxy adds on it (a link not named has none, and no proxy; :meth:`set_delay`
    changes it); ``settings`` maps a tier to extra settings (field name -> value
    as a string) and ``env`` is exported to every tier. Every tier serves gRPC
    on port 50051 of its management address, ``/metrics`` on 9100 if ``metrics``,
    and the device its HTTP gateway on 8080 if ``http``. Logs go to ``log_dir/<tier>.log``
    (a delay proxy's to ``log_dir/delay-<link>.log``).
    """

    __test__ = False  # not a pytest test class, despite the name

    link: str = "none"
    backhaul: str = "none"
    _: KW_ONLY
    delays: dict[str, float] = field(default_factory=dict)
    settings: dict[Tier, dict[str, str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    metrics: bool = True
    http: bool = False
    log_dir: Path = Path(".cache/logs/netns")
    processes: dict[Tier, TierProcess] = field(default_factory=dict)
    launches: dict[Tier, TierLaunch] = field(default_factory=dict, init=False, repr=False)
    network: NamespaceNetwork | None = field(default=None, init=False)
    proxies: dict[str, ProxyProcess] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = {self.link, self.backhaul} - set(LINK_PROFILES)
        if unknown:
            raise ValueError(f"unknown link profile {', '.join(sorted(unknown))}; known: {', '.join(LINK_PROFILES)}")
        for link, delay_ms in self.delays.items():
            if link not in LINKS:
                raise ValueError(f"no link {link!r} to delay; the links are {', '.join(LINKS)}")
            if not 0.0 <= delay_ms <= MAX_DELAY_MS:
                raise ValueError(f"the {link} delay must lie in [0, {MAX_DELAY_MS:g}] ms, got {delay_ms}")

    def start_chain(self) -> None:
        """Build the namespaces and links, shape them, start the delay proxies, then the tiers."""
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        pid, instance = os.getpid(), next(_instances)
        self.network = NamespaceNetwork(f"{pid:x}n{instance}", free_octet(pid + instance))
        self.network.create()
        self.shape(Tier.DEVICE.link, self.link)
        self.shape(Tier.EDGE.link, self.backhaul)
        for link, delay_ms in self.delays.items():
            self.proxies[link] = self._start_proxy(link, delay_ms)
        super().start_chain()

    def _start_proxy(self, link: str, delay_ms: float) -> ProxyProcess:
        """A delay proxy in the sender's namespace, forwarding loopback :data:`PROXY_PORT` over ``link``."""
        assert self.network is not None
        sender, receiver = self.network.ends(link)
        assert sender.namespace is not None
        return ProxyProcess.start(
            f"{LOOPBACK}:{PROXY_PORT}",
            f"{receiver.address}:{GRPC_PORT}",
            f"{self.host(LINKS[link][0])}:{PROXY_CONTROL_PORT}",
            delay_ms,
            self.log_dir / f"delay-{link}.log",
            ("ip", "netns", "exec", sender.namespace),
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every tier (SIGTERM, SIGKILL after ``timeout_s``) and delay proxy; delete the veths and namespaces."""
        try:
            super().stop(timeout_s)
        finally:
            while self.proxies:
                self.proxies.popitem()[1].stop()
            if self.network is not None:
                self.network.delete()

    def launch(self, tier: Tier) -> TierLaunch:
        """In its namespace, on every interface; its next tier at that tier's end of the link between them."""
        assert self.network is not None
        next_address = None
        if tier.next is not None and tier.link in self.proxies:
            next_address = f"{LOOPBACK}:{PROXY_PORT}"
        elif tier.next is not None:
            next_address = f"{self.network.links[tier.link].second.address}:{GRPC_PORT}"
        served = tier_env(
            tier,
            ALL_INTERFACES,
            GRPC_PORT,
            next_address,
            self.settings.get(tier, {}),
            self.log_dir,
            metrics_port=METRICS_PORT if self.metrics else 0,
            http_port=HTTP_PORT if self.http else 0,
        )
        prefix = ("ip", "netns", "exec", self.network.namespaces[tier])
        return TierLaunch(
            tier=tier,
            address=self.address(tier),
            env={**self.env, **served},
            log_path=self.log_dir / f"{tier.value}.log",
            command_prefix=prefix,
        )

    def host(self, tier: Tier) -> str:
        """The tier's address on its management link (reachable from the root namespace)."""
        assert self.network is not None, "the testbed is not started"
        return self.network.management[tier].second.address

    def address(self, tier: Tier) -> str:
        """host:port of the tier's gRPC over its management link."""
        return f"{self.host(tier)}:{GRPC_PORT}"

    @property
    def device_address(self) -> str:
        return self.address(Tier.DEVICE)

    def metrics_url(self, tier: Tier) -> str:
        if not self.metrics:
            raise ValueError("this testbed's tiers serve no metrics (metrics=False)")
        return f"http://{self.host(tier)}:{METRICS_PORT}/metrics"

    @property
    def http_url(self) -> str:
        """The device's HTTP gateway (``POST /v1/infer`` under it)."""
        if not self.http:
            raise ValueError("this testbed's device serves no HTTP (http=False)")
        return f"http://{self.host(Tier.DEVICE)}:{HTTP_PORT}"

    def kill(self, tier: Tier) -> None:
        """SIGKILL the tier's process (by its pid) and reap it."""
        self.processes[tier].process.kill()
        self.processes[tier].process.wait()

    def terminate(self, tier: Tier, timeout_s: float = 15.0) -> None:
        """SIGTERM the tier and wait for it to drain (SIGKILL after ``timeout_s``)."""
        self.processes[tier].stop(timeout_s)

    def pause(self, tier: Tier) -> None:
        self.processes[tier].process.send_signal(signal.SIGSTOP)

    def resume(self, tier: Tier) -> None:
        self.processes[tier].process.send_signal(signal.SIGCONT)

    def start(self, tier: Tier) -> None:
        """Start a stopped tier again, configured as before (its log goes on), and wait until it is SERVING."""
        if self.processes[tier].process.poll() is None:
            raise RuntimeError(f"the {tier.value} is still running (pid {self.processes[tier].process.pid})")
        self.processes[tier] = self.launches[tier].start(append_log=True)

    def set_link(self, link: str, up: bool) -> None:
        """Bring both ends of ``device-edge`` or ``edge-cloud`` up or down."""
        assert self.network is not None, "the testbed is not started"
        self.network.set_link(link, up)

    def shape(self, link: str, profile: str) -> None:
        """Shape ``device-edge`` or ``edge-cloud`` to a :data:`LINK_PROFILES` profile from now on."""
        assert self.network is not None, "the testbed is not started"
        if profile not in LINK_PROFILES:
            raise ValueError(f"unknown link profile {profile!r}; known: {', '.join(LINK_PROFILES)}")
        self.network.shape(link, profile)

    def set_delay(self, link: str, delay_ms: float) -> float:
        """Set the one-way delay of a link started with one (in ``delays``); the proxy's confirmed value."""
        if link not in self.proxies:
            raise ValueError(f"the {link} link has no delay proxy: name it in delays={{...}} when starting the testbed")
        return self.proxies[link].set_delay(delay_ms)
