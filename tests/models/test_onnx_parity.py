"""The shipped package in models/fmnist-cnn: checksums, ONNX-vs-torch parity, accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from lab import fashion_mnist  # noqa: E402
from splitexit.shared.manifest import Manifest, load_manifest, verified_segment_path  # noqa: E402
from splitexit.shared.preprocess import normalize_images  # noqa: E402
from training.cnn import load_reference  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[2] / "models" / "fmnist-cnn"
PARITY_SAMPLES = 256
TOLERANCE = 1e-4
MIN_FINAL_ACCURACY = 0.92


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return load_manifest(PACKAGE)


@pytest.fixture(scope="module")
def sessions(manifest: Manifest) -> list[ort.InferenceSession]:
    """One session per block, each file verified against the manifest's checksum first."""
    return [
        ort.InferenceSession(str(verified_segment_path(PACKAGE, block)), providers=["CPUExecutionProvider"])
        for block in manifest.blocks
    ]


@pytest.fixture(scope="module")
def test_set(manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """The 10k test images, preprocessed exactly as serving does, and their labels."""
    pixels, labels = fashion_mnist.load("test")
    return normalize_images(pixels, manifest.input), labels


def chain(sessions: list[ort.InferenceSession], x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(logits, activation)`` of every segment, each fed the previous one's activation."""
    outputs = []
    for session in sessions:
        logits, x = session.run(["logits", "activation"], {"x": x})
        outputs.append((logits, x))
    return outputs


def test_checksums_match(manifest: Manifest) -> None:
    for block in manifest.blocks:
        verified_segment_path(PACKAGE, block)


def test_onnx_chain_matches_torch(
    sessions: list[ort.InferenceSession], test_set: tuple[np.ndarray, np.ndarray]
) -> None:
    x = test_set[0][:PARITY_SAMPLES]
    model = load_reference(PACKAGE)
    with torch.no_grad():
        torch_exits = model(torch.from_numpy(x))
    for k, ((logits, _), want) in enumerate(zip(chain(sessions, x), torch_exits, strict=True), start=1):
        want = want.numpy()
        assert np.abs(logits - want).max() <= TOLERANCE, f"exit {k}"
        assert (logits.argmax(1) == want.argmax(1)).all(), f"exit {k}"


def test_exit_accuracy_ladder(
    manifest: Manifest, sessions: list[ort.InferenceSession], test_set: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = test_set
    correct = np.zeros(manifest.num_blocks)
    for start in range(0, len(images), 1000):
        for k, (logits, _) in enumerate(chain(sessions, images[start : start + 1000])):
            correct[k] += (logits.argmax(1) == labels[start : start + 1000]).sum()
    accuracy = correct / len(images)
    assert accuracy[-1] >= MIN_FINAL_ACCURACY
    assert accuracy[0] < accuracy[-1]
    np.testing.assert_allclose(accuracy, manifest.exit_accuracy, atol=2e-3)
