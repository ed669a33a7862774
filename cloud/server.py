"""The cloud tier: hosts the whole network and answers every sample that reaches it."""

from __future__ import annotations

from splitexit.cloud.settings import CloudSettings
from splitexit.shared.server import serve_resuming_tier


async def serve(settings: CloudSettings | None = None) -> None:
    await serve_resuming_tier(settings or CloudSettings())
