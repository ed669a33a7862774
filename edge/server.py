"""The edge tier: resumes samples the device passes on, exits or offloads to the cloud."""

from __future__ import annotations

from splitexit.edge.settings import EdgeSettings
from splitexit.shared.server import serve_resuming_tier


async def serve(settings: EdgeSettings | None = None) -> None:
    await serve_resuming_tier(settings or EdgeSettings())
