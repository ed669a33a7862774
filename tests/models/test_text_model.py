"""The text packages: checksums, rebuild from the backbone, and torch == ONNX == transformers' BERT."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lab.text_data import sentiment
from splitexit.shared.manifest import MANIFEST_FILE, Manifest, TextInput, load_manifest, verified_segment_path
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tokenizer import TextTokenizer

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from training.encoders import load_encoder  # noqa: E402
from training.text_export import check_backbone, missing_or_stale, rebuild  # noqa: E402
from training.text_model import HEADS_FILE, load_backbone, load_reference, package_backbone_dir  # noqa: E402
from training.text_train import SENTIMENT_PACKAGE, TOPIC_PACKAGE  # noqa: E402

TOLERANCE = 1e-4
HIDDEN = 384  # all-MiniLM-L6-v2's width
PACKAGES = [SENTIMENT_PACKAGE, TOPIC_PACKAGE]


@pytest.fixture(scope="module")
def ids() -> list[np.ndarray]:
    """Real yelp sentences as the device tokenizes them, ``[1, T]`` each, of many lengths."""
    spec = load_manifest(DEFAULT_MODELS_DIR / SENTIMENT_PACKAGE).input
    assert isinstance(spec, TextInput)
    tokenizer = TextTokenizer.from_package(DEFAULT_MODELS_DIR / SENTIMENT_PACKAGE, spec)
    return [tokenizer.encode_utf8(s.text.encode()) for s in sentiment("yelp")[:16]]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_is_complete_and_verified(name: str) -> None:
    package = DEFAULT_MODELS_DIR / name
    manifest = load_manifest(package)
    assert manifest.task == "text-classification" and isinstance(manifest.input, TextInput)
    assert manifest.num_blocks == 6 and len(manifest.exit_accuracy) == 6
    first = manifest.block(1).input
    assert (first.dtype, first.shape, first.vocab_size) == ("int64", [None, None], 30522)
    for block in manifest.blocks:
        verified_segment_path(package, block)
        assert (
            block.activation.shape == [None, None, HIDDEN] and block.activation.max_length == manifest.input.max_tokens
        )
    check_backbone(package, load_encoder(package_backbone_dir(package)))
    assert (package / HEADS_FILE).stat().st_size < 20 << 20  # what git holds; the slices are rebuilt


def test_rebuild_from_backbone_and_heads_reproduces_the_manifest_checksums(tmp_path: Path) -> None:
    """What `make models` does on a fresh clone: only manifest, heads and tokenizer are there."""
    package = DEFAULT_MODELS_DIR / SENTIMENT_PACKAGE
    for name in (MANIFEST_FILE, HEADS_FILE, "tokenizer.json"):
        shutil.copy(package / name, tmp_path / name)
    manifest = load_manifest(tmp_path)
    assert rebuild(tmp_path) == [block.file for block in manifest.blocks]
    assert missing_or_stale(tmp_path, manifest) == [] and rebuild(tmp_path) == []


def exits_and_activations(sessions: list[ort.InferenceSession], x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    outputs = []
    for session in sessions:
        logits, x = session.run(["logits", "activation"], {"x": x})
        outputs.append((logits, x))
    return outputs


@pytest.mark.parametrize("name", PACKAGES)
def test_onnx_segments_equal_torch_on_real_sentences(name: str, ids: list[np.ndarray]) -> None:
    package = DEFAULT_MODELS_DIR / name
    manifest: Manifest = load_manifest(package)
    sessions = [
        ort.InferenceSession(str(package / b.file), providers=["CPUExecutionProvider"]) for b in manifest.blocks
    ]
    model = load_reference(package, len(manifest.labels))
    assert len({x.shape[1] for x in ids}) > 8, "sentences of many lengths: the token axis is dynamic"
    same_length = [x for x in ids if x.shape[1] == ids[0].shape[1]]
    for x in [*ids, np.concatenate(same_length[:2] if len(same_length) > 1 else [ids[0], ids[0]])]:
        with torch.no_grad():
            hidden, expected = torch.from_numpy(x), []
            for k in range(1, 7):
                logits, hidden = model.segment(k)(hidden)
                expected.append((logits.numpy(), hidden.numpy()))
        for k, (got, want) in enumerate(zip(exits_and_activations(sessions, x), expected, strict=True), start=1):
            assert np.abs(got[0] - want[0]).max() <= TOLERANCE, f"{name} block {k} logits"
            assert np.abs(got[1] - want[1]).max() <= TOLERANCE, f"{name} block {k} activation"
            assert (got[0].argmax(1) == want[0].argmax(1)).all()


def test_segments_are_transformers_bert_layer_by_layer(ids: list[np.ndarray]) -> None:
    """Cutting the encoder into segments changes nothing: every block's activation is BERT's hidden state."""
    package = DEFAULT_MODELS_DIR / SENTIMENT_PACKAGE
    model = load_reference(package, 2)
    bert = load_backbone()
    with torch.no_grad():
        for x in ids[:8]:
            reference = bert(input_ids=torch.from_numpy(x), output_hidden_states=True).hidden_states[1:]
            hidden = torch.from_numpy(x)
            for k, want in enumerate(reference, start=1):
                _, hidden = model.segment(k)(hidden)
                assert torch.allclose(hidden, want, atol=1e-5), f"layer {k}"
