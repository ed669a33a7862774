"""A link's keepalive pings are welcome at the next tier, and its health watch outlives its connection.

The link pings every 2 s on an idle connection (:func:`~splitexit.shared.link.link_options`);
a server that does not allow that answers the third ping with ``GOAWAY too_many_pings``,
after about 6 s, and the link takes its next tier for down until it reconnects, so
every sample sent in that moment is answered degraded. A real cloud tier, a real
link, 8 s idle: the link must see its next tier serving the whole time. So must a
link whose connections a server ends every second; and a next tier that is killed
is still taken for down within a second.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from splitexit.shared.link import TierLink
from splitexit.shared.tiers import Tier
from splitexit.testbed import free_port, start_tier

pytestmark = pytest.mark.slow
IDLE_S = 8.0  # past the third ping (6 s), where a server that polices pings hangs up
AGED_S = 3.5  # three connections' ages


def test_an_idle_link_stays_up(tmp_path: Path) -> None:
    cloud = start_tier(Tier.CLOUD, free_port(), None, {}, tmp_path)
    changes: list[bool] = []

    async def idle() -> None:
        link = TierLink(cloud.address, 1 << 20, on_reachable=changes.append)
        link.start()
        await asyncio.sleep(IDLE_S)
        await link.close()

    try:
        asyncio.run(idle())
    finally:
        cloud.stop()
    assert changes == [True], (
        f"the link saw its next tier change {changes} while idle; cloud log:\n"
        + (tmp_path / "cloud.log").read_text()[-2000:]
    )


def test_a_connection_that_ages_out_does_not_take_the_next_tier_down() -> None:
    """A server that ends every connection after 1 s (GOAWAY, as a proxy or ``max_connection_age`` does)
    ends the link's health watch with it: the link renews the watch instead of calling its next tier down."""
    changes: list[bool] = []

    async def aged() -> None:
        server = grpc.aio.server(
            options=[("grpc.max_connection_age_ms", 1000), ("grpc.max_connection_age_grace_ms", 100)]
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        link = TierLink(f"127.0.0.1:{port}", 1 << 20, on_reachable=changes.append)
        link.start()
        try:
            await asyncio.sleep(AGED_S)
        finally:
            await link.close()
            await server.stop(0)

    asyncio.run(aged())
    assert changes == [True], f"the link saw its next tier change {changes} as its connections aged out"


def test_a_next_tier_that_is_gone_is_still_taken_for_down(tmp_path: Path) -> None:
    cloud = start_tier(Tier.CLOUD, free_port(), None, {}, tmp_path)
    changes: list[tuple[bool, float]] = []

    async def killed() -> None:
        link = TierLink(cloud.address, 1 << 20, on_reachable=lambda up: changes.append((up, time.monotonic())))
        link.start()
        while not changes:
            await asyncio.sleep(0.01)
        cloud.process.kill()
        killed_at = time.monotonic()
        for _ in range(300):
            if len(changes) > 1:
                break
            await asyncio.sleep(0.01)
        await link.close()
        changes.append((False, killed_at))

    try:
        asyncio.run(killed())
    finally:
        cloud.stop()
    (up, _), (down, down_at), (_, killed_at) = changes
    assert up and not down
    assert down_at - killed_at < 1.0, f"the link took {down_at - killed_at:.2f} s to see its next tier gone"
