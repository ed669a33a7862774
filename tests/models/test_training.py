"""Train on a tiny budget, export the package and check it end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from lab.fashion_mnist import LABELS  # noqa: E402
from splitexit.shared.integrity import verify_package  # noqa: E402
from splitexit.shared.manifest import Manifest, load_manifest, sha256_of, verified_segment_path  # noqa: E402
from splitexit.shared.tiers import Tier  # noqa: E402
from training.cnn import load_reference  # noqa: E402
from training.data import load_tensors  # noqa: E402
from training.export import export_package  # noqa: E402
from training.train import TrainConfig, run  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float], Manifest]:
    out = tmp_path_factory.mktemp("fmnist-cnn")
    losses, manifest = run(TrainConfig(epochs=2, batch_size=64, train_limit=512), out, eval_limit=1000)
    return out, losses, manifest


def test_loss_goes_down(trained: tuple[Path, list[float], Manifest]) -> None:
    _, losses, _ = trained
    assert losses[-1] < losses[0]


def test_manifest_validates(trained: tuple[Path, list[float], Manifest]) -> None:
    out, _, manifest = trained
    assert load_manifest(out) == manifest
    assert manifest.num_blocks == 6
    assert manifest.labels == list(LABELS)
    assert manifest.default_ranges[Tier.DEVICE].last == 2
    assert manifest.default_ranges[Tier.CLOUD].last == 6
    assert len(manifest.exit_accuracy) == 6 and all(0 <= a <= 1 for a in manifest.exit_accuracy)
    for previous, block in zip(manifest.blocks, manifest.blocks[1:]):
        assert block.input.shape == previous.activation.shape
    assert all(block.macs > 0 for block in manifest.blocks)


def test_checksums_match(trained: tuple[Path, list[float], Manifest]) -> None:
    out, _, manifest = trained
    for block in manifest.blocks:
        verified_segment_path(out, block)
    assert verify_package(out) == manifest  # export wrote integrity.json over every file


def test_export_is_deterministic(trained: tuple[Path, list[float], Manifest]) -> None:
    out, _, manifest = trained
    again = export_package(out, manifest.input, eval_limit=100)
    assert [b.sha256 for b in again.blocks] == [b.sha256 for b in manifest.blocks]
    assert [sha256_of(out / b.file) for b in manifest.blocks] == [b.sha256 for b in manifest.blocks]


def test_onnx_chain_matches_torch(trained: tuple[Path, list[float], Manifest]) -> None:
    out, _, manifest = trained
    model = load_reference(out)
    x, _ = load_tensors("test", manifest.input, limit=64)
    onnx_x = x.numpy()
    with torch.no_grad():
        for k, block in enumerate(manifest.blocks, start=1):
            session = ort.InferenceSession(str(out / block.file), providers=["CPUExecutionProvider"])
            logits, onnx_x = session.run(["logits", "activation"], {"x": onnx_x})
            want_logits, x = model.segment(k)(x)
            assert np.abs(logits - want_logits.numpy()).max() <= 1e-4
            assert np.abs(onnx_x - x.numpy()).max() <= 1e-4
