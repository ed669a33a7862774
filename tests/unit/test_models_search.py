"""Where a tier finds its models: its ``models_dir`` setting, then ``$SPLITEXIT_MODELS_DIR``, then ``./models``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from splitexit.cloud.settings import CloudSettings
from splitexit.device.settings import DeviceSettings
from splitexit.edge.settings import EdgeSettings
from splitexit.shared.settings import MODELS_DIR_ENV


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the checkout, with no models setting in the environment."""
    for name in (
        MODELS_DIR_ENV,
        "SPLITEXIT_CONFIG",
        *(f"SPLITEXIT_{t}_MODELS_DIR" for t in ("DEVICE", "EDGE", "CLOUD")),
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_settings_every_tier_looks_in_models_of_the_working_directory(elsewhere: Path) -> None:
    assert (
        DeviceSettings().models_dir == EdgeSettings().models_dir == CloudSettings().models_dir == elsewhere / "models"
    )


def test_the_shared_variable_comes_before_the_working_directory(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(elsewhere / "shared"))
    assert DeviceSettings().models_dir == CloudSettings().models_dir == elsewhere / "shared"


def test_a_tier_setting_comes_first(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(elsewhere / "shared"))
    monkeypatch.setenv("SPLITEXIT_EDGE_MODELS_DIR", str(elsewhere / "edge-only"))
    config = elsewhere / "splitexit.yaml"
    config.write_text(f"cloud:\n  models_dir: {elsewhere / 'from-yaml'}\n")
    monkeypatch.setenv("SPLITEXIT_CONFIG", str(config))
    assert EdgeSettings().models_dir == elsewhere / "edge-only"
    assert CloudSettings().models_dir == elsewhere / "from-yaml"
    assert DeviceSettings(models_dir=elsewhere / "given").models_dir == elsewhere / "given"
    assert DeviceSettings().models_dir == elsewhere / "shared"


def test_a_tier_that_finds_no_models_says_where_it_looked_in_one_line(elsewhere: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPLITEXIT_")}
    env.update({"SPLITEXIT_CLOUD_PLAINTEXT": "true", "SPLITEXIT_CLOUD_PORT": "0", "SPLITEXIT_CLOUD_METRICS_PORT": "0"})
    run = subprocess.run(
        [sys.executable, "-m", "splitexit", "serve", "cloud"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert f"no model packages (folders with a manifest.json) in {elsewhere / 'models'}" in run.stderr
    assert MODELS_DIR_ENV in run.stderr and "Traceback" not in run.stderr
