"""Named link profiles for the namespace testbed: the ``tbf`` rate shaping of a tier-to-tier link.

Only the rate is shaped (the kernel the testbed targets has no ``netem``, so no
delay or jitter). ``burst`` is about 1 ms of the rate but at least 4 KiB (two
full frames and then some), so a message of a few KiB already waits for tokens
on the slow profiles; ``latency`` bounds the queue (rate × latency bytes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkProfile:
    """A ``tbf`` shaping: its rate (tc syntax), bucket size in bytes and longest queueing time."""

    rate: str
    burst_bytes: int
    latency_ms: int

    def tbf(self) -> list[str]:
        """The qdisc's arguments for ``tc qdisc replace dev X root ...``."""
        return ["tbf", "rate", self.rate, "burst", str(self.burst_bytes), "latency", f"{self.latency_ms}ms"]


LINK_PROFILES: dict[str, LinkProfile | None] = {
    "none": None,  # no qdisc: as fast as the veth goes
    "wan": LinkProfile("1gbit", 131072, 50),
    "5g": LinkProfile("300mbit", 65536, 100),
    "wifi": LinkProfile("100mbit", 16384, 100),
    "4g": LinkProfile("20mbit", 4096, 200),
    "3g": LinkProfile("2mbit", 4096, 500),
    "slow": LinkProfile("1mbit", 4096, 1000),
}
