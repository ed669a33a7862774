"""Cloud settings: env ``SPLITEXIT_CLOUD_*`` or the ``cloud:`` section of ``$SPLITEXIT_CONFIG``."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from splitexit.shared.settings import MetricsPort, TierSettings, tier_env_prefix
from splitexit.shared.tiers import Tier


class CloudSettings(TierSettings):
    """The last tier: hosts through the final block and always answers."""

    tier: ClassVar[Tier] = Tier.CLOUD
    model_config = SettingsConfigDict(env_prefix=tier_env_prefix(Tier.CLOUD), extra="forbid")

    port: int = 50053
    metrics_port: MetricsPort = 9103
    next_tier: None = None
