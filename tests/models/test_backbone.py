"""Exits on a pretrained encoder folder: the MPNet layers cut exactly, the command end to end, bad input in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from lab.text_data import sentiment
from splitexit.policies.chain import Chain
from splitexit.shared.integrity import verify_package
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tiers import Tier
from splitexit.shared.tokenizer import TextTokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from training.backbone import main  # noqa: E402
from training.backbones import minilm_dir  # noqa: E402
from training.calibration import CALIBRATION_KEY, EVALUATION_FILE  # noqa: E402
from training.encoders import load_encoder  # noqa: E402
from training.text_model import EarlyExitEncoder, exit_heads, load_reference  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
LAYERS = 3


@pytest.fixture(scope="module")
def small_mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MPNet encoder folder (3 layers x 32, seeded weights) with all-MiniLM-L6-v2's WordPiece tokenizer."""
    folder = tmp_path_factory.mktemp("small-mpnet")
    config = transformers.MPNetConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    transformers.MPNetModel(config, add_pooling_layer=False).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, folder / name)
    return folder


def test_mpnet_segments_are_the_encoders_hidden_states_layer_by_layer(small_mpnet: Path) -> None:
    """Each layer computes the relative position bias the encoder shares, so a cut changes nothing."""
    encoder = load_encoder(small_mpnet)
    model = EarlyExitEncoder(encoder, exit_heads(2, LAYERS, encoder.hidden)).eval()
    tokenizer = encoder.tokenizer()
    with torch.no_grad():
        for sentence in [s.text for s in sentiment("yelp")[:6]]:
            ids = torch.tensor([tokenizer(sentence)["input_ids"]])
            reference = encoder.model(input_ids=ids, output_hidden_states=True).hidden_states[1:]
            hidden = ids
            for k, want in enumerate(reference, start=1):
                _, hidden = model.segment(k)(hidden)
                assert torch.allclose(hidden, want, atol=1e-5), f"layer {k}"


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_command_packages_an_encoder_folder_that_a_tier_serves(
    small_mpnet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLITEXIT_CACHE_DIR", str(tmp_path / "cache"))
    labels = {0: "bad", 1: "good"}
    rows = [{"text": s.text, "label": labels[s.label]} for s in sentiment("amazon")[:80]]
    out = tmp_path / "small-mpnet-sentiment"
    assert (
        main(
            [
                "--encoder",
                str(small_mpnet),
                "--data",
                str(write_jsonl(tmp_path / "d.jsonl", rows)),
                "--out",
                str(out),
                "--epochs",
                "2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    manifest = verify_package(out)
    assert manifest.labels == ["bad", "good"] and manifest.num_blocks == LAYERS
    assert all(block.temperature is not None for block in manifest.blocks)
    report = json.loads((out / EVALUATION_FILE).read_text())[CALIBRATION_KEY]
    assert report["calibration_samples"] == report["test_samples"] == 12
    # a tier's onnxruntime chain gives torch's logits at every exit
    chain = Chain.of(manifest, None)
    served = HostedModel(out, manifest, chain, tier=Tier.CLOUD, onnx_threads=1)
    tokenizer = TextTokenizer.from_package(out, manifest.input)
    reference = load_reference(out, 2, load_encoder(small_mpnet))
    x = tokenizer.encode_utf8(rows[0]["text"].encode())
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
    for k in range(1, LAYERS + 1):
        logits, x = served.run_block(k, x)
        np.testing.assert_allclose(logits, expected[k - 1].numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "fine", "label": "good"}\nnot json\n', r"d\.jsonl:2: not a JSON object"),
        ('{"text": "fine", "label": "good"}\n{"text": "", "label": "bad"}\n', r"d\.jsonl:2: a row needs a non-empty"),
        ('{"text": "fine", "label": "good"}\n{"text": "great", "label": "good"}\n', r"1 label\(s\)"),
    ],
    ids=["not-json", "empty-text", "one-class"],
)
def test_bad_data_is_one_line_naming_the_row(
    small_mpnet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(content)
    assert main(["--encoder", str(small_mpnet), "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert re.search(message, err)


def test_a_folder_without_weights_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"text {i}", "label": i % 2} for i in range(40)])
    assert main(["--encoder", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path} is not an encoder folder: it lacks config.json, model.safetensors, tokenizer.json"


def test_a_tokenizer_with_its_own_end_token_truncates_with_it(tmp_path: Path) -> None:
    """MPNet frames a text as ``<s> ... </s>``, not ``[CLS] ... [SEP]``: the device keeps the tokenizer's own."""
    spec = json.loads((minilm_dir() / "tokenizer.json").read_text())
    spec["post_processor"] = {"type": "RobertaProcessing", "sep": ["[unused1]", 2], "cls": ["[unused0]", 1]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    tokenizer = TextTokenizer(Tokenizer.from_file(str(tmp_path / "tokenizer.json")), max_tokens=5)
    assert tokenizer.ids("good food") == [1, *tokenizer.ids("good food")[1:-1], 2]
    cut = tokenizer.ids("the food was really very good", truncate=True)
    assert len(cut) == 5 and cut[0] == 1 and cut[-1] == 2
