"""The device's tokenizer (``splitexit.shared.tokenizer``, no torch) gives exactly the ids training used
(``transformers``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lab.text_data import SENTIMENT_DOMAINS, bbc_news, sentiment
from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import ChecksumError, TextInput, load_manifest
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tokenizer import TextTokenizer

pytest.importorskip("transformers")
from training.text_model import load_hf_tokenizer  # noqa: E402
from training.text_train import MAX_TOKENS, SENTIMENT_PACKAGE, TOPIC_PACKAGE  # noqa: E402


def device_tokenizer(name: str) -> TextTokenizer:
    spec = load_manifest(DEFAULT_MODELS_DIR / name).input
    assert isinstance(spec, TextInput) and spec.max_tokens == MAX_TOKENS
    return TextTokenizer.from_package(DEFAULT_MODELS_DIR / name, spec)


@pytest.mark.parametrize(
    ("name", "texts", "at_least_cut"),
    [
        (SENTIMENT_PACKAGE, lambda: [s.text for d in SENTIMENT_DOMAINS for s in sentiment(d)], 0),
        (TOPIC_PACKAGE, lambda: [a.text for a in bbc_news()[0]], 2000),
    ],
    ids=["sentiment-3000-sentences", "bbc-2225-articles"],
)
def test_device_ids_equal_training_ids(name: str, texts: Callable[[], list[str]], at_least_cut: int) -> None:
    """Every text of the task, cut to the token limit as training cut it (most BBC articles are longer)."""
    texts = texts()
    training = load_hf_tokenizer()(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    device = device_tokenizer(name)
    served = [device.encode_utf8(text.encode(), truncate=True)[0].tolist() for text in texts]
    assert served == training
    assert sum(len(ids) == MAX_TOKENS for ids in served) >= at_least_cut


def test_normalisation_lowercases_and_strips_accents_like_bert() -> None:
    device = device_tokenizer(SENTIMENT_PACKAGE)
    hf = load_hf_tokenizer()
    for text in ["GREAT film!", "Café crème, naïve déjà vu", "日本語 and emoji 🎬", "tab\tand\nnewline"]:
        assert device.ids(text) == hf(text)["input_ids"]


def test_limits_and_errors() -> None:
    device = device_tokenizer(SENTIMENT_PACKAGE)
    long_text = "word " * 500
    with pytest.raises(InvalidInput, match="502 tokens long; this model takes at most 128"):
        device.ids(long_text)
    cut = device.ids(long_text, truncate=True)
    assert len(cut) == MAX_TOKENS and cut[0] == 101 and cut[-1] == 102
    for data, phrase in [(b"", "empty"), (b"   ", "empty"), (b"\xff\xfe", "not valid UTF-8: byte 0xff at offset 0")]:
        with pytest.raises(InvalidInput, match=phrase):
            device.encode_utf8(data)
    assert device.encode_utf8("ok".encode()).dtype.name == "int64"


def test_a_tampered_tokenizer_file_is_refused(tmp_path: Path) -> None:
    spec = load_manifest(DEFAULT_MODELS_DIR / SENTIMENT_PACKAGE).input
    (tmp_path / spec.tokenizer).write_text("{}")
    with pytest.raises(ChecksumError, match="tokenizer.json has sha256"):
        TextTokenizer.from_package(tmp_path, spec)
