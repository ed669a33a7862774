"""Configuration shared by every tier: pydantic settings from env vars and YAML.

Each tier has its own settings class (``device/settings.py`` and siblings) with
its own env prefix, ``SPLITEXIT_DEVICE_``, ``SPLITEXIT_EDGE_`` or
``SPLITEXIT_CLOUD_``, so one environment or one YAML file can describe the
whole testbed. Precedence, highest first: constructor arguments, env vars, the
tier's section of the YAML file named by ``$SPLITEXIT_CONFIG``, defaults.

What blocks each tier hosts is a fact about the whole chain, which every tier
must agree on, so it is set once for all of them: the top-level ``hosted:`` of
the YAML file or the env var ``SPLITEXIT_HOSTED`` (JSON), never per tier. A
model or tier it leaves out keeps the manifest's default range::

    # splitexit.yaml
    hosted:
      fmnist-cnn: {device: {first: 1, last: 2}, edge: {first: 3, last: 4}, cloud: {first: 5, last: 6}}
    edge:
      exit_threshold: 0.9

A tier finds its model packages where a user puts them, in this order: its own
``models_dir`` setting (``SPLITEXIT_<TIER>_MODELS_DIR`` or the YAML file), then
``$SPLITEXIT_MODELS_DIR`` (one folder for every tier), then ``./models`` in the
working directory. No path is computed from where the code is installed, so a
pip-installed tier and one run from a checkout find models the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar, Self

import yaml
from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from splitexit.shared.manifest import BlockRange
from splitexit.shared.tensors import Codec
from splitexit.shared.tiers import Tier

MODELS_DIR_ENV = "SPLITEXIT_MODELS_DIR"
CONFIG_ENV = "SPLITEXIT_CONFIG"
HOSTED_ENV = "SPLITEXIT_HOSTED"
HostedRanges = dict[str, dict[Tier, BlockRange]]  # model -> tier -> its blocks
MetricsPort = Annotated[int, Field(ge=0, le=65535, description="Prometheus /metrics port; 0: none")]


def default_models_dir() -> Path:
    """The models folder of a tier that sets no ``models_dir``: ``$SPLITEXIT_MODELS_DIR``, else ``./models``."""
    return Path(os.environ.get(MODELS_DIR_ENV) or "models").absolute()


DEFAULT_MODELS_DIR = default_models_dir()  # for tools and tests, which run from the repository root


class TierSettings(BaseSettings):
    """What every tier is configured with."""

    tier: ClassVar[Tier]
    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True)

    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 in containers")
    port: int = Field(description="gRPC port")
    metrics_port: MetricsPort
    models_dir: Path = Field(
        default_factory=default_models_dir,
        description=f"folder of model packages; unset: ${MODELS_DIR_ENV}, else ./models in the working directory",
    )
    model_poll_s: float = Field(
        0.0, ge=0.0, description="seconds between looks for new or changed packages in models_dir; 0: only at start"
    )
    package_public_key: Path | None = Field(
        None, description="ed25519 public key (PEM); set, every model package must carry integrity.sig signed by it"
    )
    hosted: HostedRanges = Field(
        default_factory=dict,
        validation_alias=HOSTED_ENV,
        description="per model, the blocks each tier hosts where not the manifest's default; one value for "
        "the whole chain (YAML: top-level `hosted`, env: SPLITEXIT_HOSTED)",
    )
    exit_threshold: float = Field(0.8, ge=0.0, le=1.0, description="α at every exit this tier runs")
    exit_thresholds: dict[str, list[float]] = Field(
        default_factory=dict, description="per model, one α per exit; overrides exit_threshold"
    )
    default_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="deadline of a request that sets none (gRPC deadline or timeout_s)"
    )
    max_in_flight: int = Field(256, ge=1, description="requests in flight at once; one more is RESOURCE_EXHAUSTED")
    drain_grace_s: float = Field(
        2.0, ge=0.0, description="after SIGTERM: seconds of NOT_SERVING on health while still serving, before refusing"
    )
    drain_timeout_s: float = Field(
        15.0, ge=0.0, description="after the grace: the most seconds to finish accepted requests before exiting"
    )
    workers: int = Field(1, ge=1, le=64, description="processes serving on the port (SO_REUSEPORT); >1: edge, cloud")
    compute_threads: int = Field(1, ge=1, description="batches run concurrently on onnxruntime")
    max_batch: int = Field(32, ge=1, le=1024, description="samples run as one batch at most; 1: no batching")
    inline_compute_us: int = Field(
        500, ge=0, le=10_000, description="an idle tier runs a batch expected to compute within this on its event loop"
    )
    max_batch_wait_us: int = Field(
        0, ge=0, le=1_000_000, description="how long a partial batch waits for more samples; 0: batch what queued"
    )
    onnx_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per session")
    max_message_bytes: int = Field(64 << 20, ge=1 << 20, description="gRPC send/receive limit")
    codec: Codec = Field("fp32", description="how activations to the next tier are encoded")
    next_tier: str | None = Field(None, description="host:port of the next tier; none for the cloud")
    link_columns: bool = Field(
        True, description="samples that stack go to the next tier as columns; off: one request each (an older tier)"
    )
    link_connections: int = Field(
        1, ge=1, le=64, description="connections to each next-tier replica, used in turn (a worker pool spreads them)"
    )
    tls_cert_file: Path | None = Field(
        None, description="this tier's certificate (PEM): served, and shown to the next tier"
    )
    tls_key_file: Path | None = Field(None, description="the private key of tls_cert_file (PEM)")
    tls_ca_file: Path | None = Field(None, description="the CA that signs the tiers' certificates (PEM)")
    plaintext: bool = Field(False, description="serve and link without TLS (a warning at start); else TLS is required")
    reflection: bool = Field(True, description="serve gRPC server reflection (lists the services; no data)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        stray = f"{tier_env_prefix(cls.tier)}HOSTED"
        if stray in os.environ:
            raise ValueError(f"{stray} is not read: hosted ranges are one setting for the whole chain, {HOSTED_ENV}")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=_yaml_section(Path(config_file), cls.tier)))
        return tuple(sources)

    @model_validator(mode="after")
    def _one_device_process(self) -> Self:
        if self.tier is Tier.DEVICE and self.workers > 1:
            raise ValueError(
                "workers > 1 is for the edge and the cloud: the device's policies learn online into one state_dir"
            )
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def tier_env_prefix(tier: Tier) -> str:
    return f"SPLITEXIT_{tier.value.upper()}_"


def _yaml_section(path: Path, tier: Tier) -> dict[str, object]:
    """The ``tier:`` mapping of a YAML config file, plus its top-level ``hosted``; empty if it has neither."""
    if not path.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV}={path} does not name a file")
    document = yaml.safe_load(path.read_text()) or {}
    section = document.get(tier.value) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: the {tier.value!r} section must be a mapping of settings")
    if "hosted" in section:
        raise ValueError(f"{path}: set hosted ranges once, at the top level, not in the {tier.value!r} section")
    return {**section, **({"hosted": document["hosted"]} if document.get("hosted") else {})}
