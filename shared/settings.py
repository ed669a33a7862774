"""Configuration shared by every tier: pydantic settings from env vars and YAML.

Each tier has its own settings class (``device/settings.py`` and siblings) with
its own env prefix, ``SPLITEXIT_DEVICE_``, ``SPLITEXIT_EDGE_`` or
``SPLITEXIT_CLOUD_``, so one environment or one YAML file can describe the
whole testbed. Precedence, highest first: constructor arguments, env vars, the
tier's section of the YAML file named by ``$SPLITEXIT_CONFIG``, defaults::

    # splitexit.yaml
    edge:
      hosted: {fmnist-cnn: {first: 1, last: 4}}
      exit_threshold: 0.9
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar

import yaml
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    InitSettingsSource,
    SettingsConfigDict,
)

from shared.manifest import BlockRange, Tier
from shared.tensors import Codec

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
CONFIG_ENV = "SPLITEXIT_CONFIG"
MetricsPort = Annotated[int, Field(ge=0, le=65535, description="Prometheus /metrics port; 0: none")]


class TierSettings(BaseSettings):
    """What every tier is configured with."""

    tier: ClassVar[Tier]
    model_config = SettingsConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 in containers")
    port: int = Field(description="gRPC port")
    metrics_port: MetricsPort
    models_dir: Path = Field(DEFAULT_MODELS_DIR, description="folder of model packages")
    hosted: dict[str, BlockRange] = Field(
        default_factory=dict,
        description="blocks this tier hosts, per model; a model not named uses its manifest's default",
    )
    exit_threshold: float = Field(0.8, ge=0.0, le=1.0, description="α at every exit this tier runs")
    exit_thresholds: dict[str, list[float]] = Field(
        default_factory=dict, description="per model, one α per exit; overrides exit_threshold"
    )
    compute_threads: int = Field(1, ge=1, description="samples run concurrently on onnxruntime")
    onnx_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per session")
    max_message_bytes: int = Field(64 << 20, ge=1 << 20, description="gRPC send/receive limit")
    cost_per_block: float = Field(0.1, ge=0.0, description="λ: cost of running one block")
    compute_weight: float = Field(1.0, ge=0.0, description="this tier's multiplier on λ (0: free)")
    offload_cost: float = Field(0.0, ge=0.0, description="o: cost of sending a sample to the next tier")
    codec: Codec = Field("fp32", description="how activations to the next tier are encoded")
    next_tier: str | None = Field(None, description="host:port of the next tier; none for the cloud")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=_yaml_section(Path(config_file), cls.tier)))
        return tuple(sources)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def tier_env_prefix(tier: Tier) -> str:
    return f"SPLITEXIT_{tier.value.upper()}_"


def _yaml_section(path: Path, tier: Tier) -> dict[str, object]:
    """The ``tier:`` mapping of a YAML config file; empty if the file has none."""
    if not path.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV}={path} does not name a file")
    document = yaml.safe_load(path.read_text()) or {}
    section = document.get(tier.value) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: the {tier.value!r} section must be a mapping of settings")
    return section
