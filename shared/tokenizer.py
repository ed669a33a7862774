"""UTF-8 text to the token ids a text model's block 1 takes, on the device, without torch.

A text package ships its Hugging Face ``tokenizer.json`` (for all-MiniLM-L6-v2:
BERT WordPiece, lowercased, accents kept), checked against the manifest's
checksum when loaded. The ``tokenizers`` library runs it; the file's own
padding and truncation settings are switched off, because serving runs one
sample at a time with no padding, so the attention mask is all ones and the
ONNX segments need no mask input.

A text becomes ``[CLS] wordpieces... [SEP]`` (all-mpnet-base-v2: ``<s> ... </s>``). One longer than the manifest's
``max_tokens`` ids is refused with :class:`InvalidInput`, unless the request
asks to truncate it: then it keeps its first ``max_tokens - 2`` wordpieces,
exactly what ``transformers``' ``truncation=True, max_length=max_tokens`` gives
(the ids training used; ``tests/models/test_text_tokenizer.py`` checks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import TextInput, verified


class TextTokenizer:
    """One package's tokenizer and token limit; thread-safe (the Rust tokenizer is immutable here)."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens
        closing = tokenizer.encode("").ids  # the special tokens alone: [CLS] [SEP] (MPNet: <s> </s>)
        if len(closing) != 2:
            raise ValueError(f"the tokenizer frames a text with {len(closing)} special tokens, not a start and an end")
        self._sep_id = closing[-1]

    @classmethod
    def from_package(cls, package_dir: Path, spec: TextInput) -> TextTokenizer:
        """The tokenizer file the manifest names, after checking its checksum."""
        remedy = "restore it from git or rebuild the package with `make train-text`"
        path = verified(package_dir / spec.tokenizer, spec.tokenizer_sha256, remedy)
        return cls(Tokenizer.from_file(str(path)), spec.max_tokens)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def ids(self, text: str, truncate: bool = False) -> list[int]:
        """``[CLS] ... [SEP]`` ids of ``text``; raises :class:`InvalidInput` if empty or too long."""
        ids = self._tokenizer.encode(text).ids
        if len(ids) <= 2:
            raise InvalidInput("the text is empty (no tokens after normalisation)")
        if len(ids) > self.max_tokens:
            if not truncate:
                raise InvalidInput(
                    f"the text is {len(ids):,} tokens long; this model takes at most {self.max_tokens} "
                    "([CLS] and [SEP] included): shorten it, or set truncate to keep the first tokens"
                )
            ids = [*ids[: self.max_tokens - 1], self._sep_id]
        return ids

    def encode_utf8(self, data: bytes, truncate: bool = False) -> np.ndarray:
        """UTF-8 bytes -> int64 ids ``[1, tokens]``, block 1's input; raises :class:`InvalidInput`."""
        if not data:
            raise InvalidInput("the text is empty (0 bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"the text is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} ({exc.reason})"
            ) from None
        return np.asarray([self.ids(text, truncate)], dtype=np.int64)
