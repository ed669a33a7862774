"""Device settings: env ``SPLITEXIT_DEVICE_*`` or the ``device:`` section of ``$SPLITEXIT_CONFIG``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from splitexit.policies.catalog import PolicyParams
from splitexit.policies.costs import CostSettings
from splitexit.shared.settings import MetricsPort, TierSettings, tier_env_prefix
from splitexit.shared.tiers import Tier


class DeviceSettings(TierSettings):
    """The tier clients talk to: decodes inputs, runs the first blocks, offloads to the edge; plans and prices
    samples."""

    tier: ClassVar[Tier] = Tier.DEVICE
    model_config = SettingsConfigDict(env_prefix=tier_env_prefix(Tier.DEVICE), extra="forbid")

    port: int = 50051
    metrics_port: MetricsPort = 9101
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP gateway port (POST /v1/infer); 0: no gateway")
    next_tier: str | None = "127.0.0.1:50052"
    default_model: str = Field("fmnist-cnn", description="the model a request without one gets")
    max_image_bytes: int = Field(8 << 20, ge=1, description="largest encoded image accepted")
    max_text_bytes: int = Field(1 << 20, ge=1, description="largest UTF-8 text accepted (before tokenizing)")
    max_batch_samples: int = Field(
        256, ge=1, description="most samples one InferBatch carries; more: RESOURCE_EXHAUSTED (HTTP 413)"
    )
    stream_concurrency: int = Field(
        64,
        ge=1,
        description="requests in flight (or answered but unread) per InferStream; one more: RESOURCE_EXHAUSTED",
    )
    decode_threads: int = Field(2, ge=1, description="threads that decode images and tokenize texts")
    policies: dict[str, str] = Field(
        default_factory=dict, description="per model, the policy requests naming none get (default: thresholds)"
    )
    policy: PolicyParams = Field(default_factory=PolicyParams, description="the policies' hyperparameters")
    costs: CostSettings = Field(
        default_factory=CostSettings,
        description="the cost model of answers, metrics and policies: λ per block, tier weights, o per link",
    )
    state_dir: Path = Field(Path(".cache/policy-state"), description="learned policy state, saved and restored here")
    auth_token: SecretStr | None = Field(
        None, description="a bearer token clients must send (gRPC `authorization` metadata, HTTP Authorization)"
    )
    auth_tokens_file: Path | None = Field(None, description="bearer tokens clients may send, one per line (# comments)")
    state_save_every: int = Field(20, ge=1, description="save a policy's state every this many samples (and at exit)")
