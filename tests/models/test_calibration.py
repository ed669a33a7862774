"""Per-exit temperatures: the fit, the ECE, the manifest field, and the tiers' confidences using them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lab.fashion_mnist import load
from splitexit.policies.chain import Chain
from splitexit.policies.plan import softmax_rows
from splitexit.shared.manifest import MANIFEST_FILE, ManifestError, load_manifest
from splitexit.shared.preprocess import normalize_images
from splitexit.shared.runtime import HostedModel, exit_probabilities
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tiers import Tier
from tests.conftest import IMAGE_MODEL_DIR

pytest.importorskip("torch")
from training.calibrate import shipped_packages  # noqa: E402
from training.calibration import CALIBRATION_KEY, EVALUATION_FILE, expected_calibration_error, fit_temperature  # noqa: E402


def test_fit_recovers_the_temperature_labels_were_drawn_at() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (20_000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax_rows(logits / 2.5)])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


def test_ece_is_the_weighted_gap_between_accuracy_and_confidence() -> None:
    probabilities = np.array([[0.9, 0.1]] * 10 + [[0.4, 0.6]] * 10)  # bins at 0.9 and 0.6
    labels = np.array([0] * 6 + [1] * 4 + [1] * 10)  # 60 % right where 0.9 was claimed, 100 % where 0.6
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.3 + 0.5 * 0.4)


def test_every_shipped_package_is_calibrated_and_reports_ece_on_its_test_split() -> None:
    packages = shipped_packages((DEFAULT_MODELS_DIR,))
    assert {p.name for p in packages} >= {"fmnist-cnn", "minilm-sentiment", "minilm-bbc-topic"}
    for package in packages:
        manifest = load_manifest(package)
        report = json.loads((package / EVALUATION_FILE).read_text())[CALIBRATION_KEY]
        assert [b.temperature for b in manifest.blocks] == report["temperature"]
        assert len(report["ece_before"]) == len(report["ece_after"]) == manifest.num_blocks
        assert report["calibration_split"] != report["test_split"]


@pytest.mark.parametrize("temperature", [0, -1.5, "warm"])
def test_a_bad_temperature_is_refused_naming_the_key(tmp_path: Path, temperature: object) -> None:
    shutil.copy(IMAGE_MODEL_DIR / MANIFEST_FILE, tmp_path / MANIFEST_FILE)
    data = json.loads((tmp_path / MANIFEST_FILE).read_text())
    data["blocks"][2]["temperature"] = temperature
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"blocks\.2\.temperature"):
        load_manifest(tmp_path)


def test_the_tiers_confidences_are_the_softmax_at_each_exits_temperature() -> None:
    """What HostedModel.run reports is softmax(logits / T_k), not the raw softmax."""
    manifest = load_manifest(IMAGE_MODEL_DIR)
    assert all(b.temperature not in (None, 1.0) for b in manifest.blocks)
    chain = Chain.of(manifest, None)
    model = HostedModel(IMAGE_MODEL_DIR, manifest, chain, tier=Tier.CLOUD, onnx_threads=1)
    pixels, _ = load("test")
    x = normalize_images(pixels[:8], manifest.input)
    never = [[1.0] * manifest.num_blocks] * len(x)  # no early exit: every block runs
    runs = model.run(1, x, never, [chain.hosted[Tier.CLOUD].last] * len(x))
    activation = x
    for k in range(1, chain.hosted[Tier.CLOUD].last + 1):
        logits, activation = model.run_block(k, activation)
        block = manifest.block(k)
        want = softmax_rows(logits / block.temperature).max(axis=1)
        assert np.allclose([run.exit_confidences[k - 1] for run in runs], want, atol=1e-12)
        assert not np.allclose(want, softmax_rows(logits).max(axis=1), atol=1e-4)
        assert np.allclose(
            exit_probabilities(logits, block.model_copy(update={"temperature": None})), softmax_rows(logits)
        )
