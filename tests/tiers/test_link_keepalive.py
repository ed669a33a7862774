"""A link's keepalive pings are welcome at the next tier: an idle link stays up.

The link pings every 2 s on an idle connection (:func:`~splitexit.shared.link.link_options`);
a server that does not allow that answers the third ping with ``GOAWAY too_many_pings``,
after about 6 s, and the link takes its next tier for down until it reconnects, so
every sample sent in that moment is answered degraded. A real cloud tier, a real
link, 8 s idle: the link must see its next tier serving the whole time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from splitexit.shared.link import TierLink
from splitexit.shared.tiers import Tier
from splitexit.testbed import free_port, start_tier

pytestmark = pytest.mark.slow
IDLE_S = 8.0  # past the third ping (6 s), where a server that polices pings hangs up


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
