"""Edge settings: env ``SPLITEXIT_EDGE_*`` or the ``edge:`` section of ``$SPLITEXIT_CONFIG``."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from splitexit.shared.settings import MetricsPort, TierSettings, tier_env_prefix
from splitexit.shared.tiers import Tier


class EdgeSettings(TierSettings):
    """The middle tier: resumes samples from the device, offloads to the cloud."""

    tier: ClassVar[Tier] = Tier.EDGE
    model_config = SettingsConfigDict(env_prefix=tier_env_prefix(Tier.EDGE), extra="forbid")

    port: int = 50052
    metrics_port: MetricsPort = 9102
    next_tier: str | None = "127.0.0.1:50053"
