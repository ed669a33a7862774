"""Texts -> every layer's pooled hidden states of a frozen encoder, computed once and cached on disk.

The backbone never trains, so the exit heads train on these features in
seconds; extracting them is the slow part (minutes for a 12-layer encoder on
two cores), hence the cache: ``<cache_dir>/<what>-<key>.npy``, the key hashing
the encoder's weights, the token limit and every text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from training.encoders import Encoder

FEATURE_BATCH = 32


class Featurizer:
    """Texts -> ``[N, num_layers, hidden]``: the masked mean of each layer's hidden states."""

    def __init__(self, encoder: Encoder, max_tokens: int, cache_dir: Path) -> None:
        self.encoder = encoder
        self.tokenizer = encoder.tokenizer()
        self.max_tokens = max_tokens
        self.cache_dir = cache_dir

    def __call__(self, texts: Sequence[str], what: str) -> Tensor:
        key = hashlib.sha256(f"{self.encoder.weights_sha256}|{self.max_tokens}|".encode())
        for text in texts:
            key.update(text.encode() + b"\0")
        path = self.cache_dir / f"{what}-{key.hexdigest()[:16]}.npy"
        if path.is_file():
            return torch.from_numpy(np.load(path))
        features = self._compute(texts, what)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, features.numpy())
        return features

    def _compute(self, texts: Sequence[str], what: str) -> Tensor:
        """Batches of similar length (little padding), then back in the original order."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out = torch.empty(len(texts), self.encoder.num_layers, self.encoder.hidden)
        for start in tqdm(range(0, len(order), FEATURE_BATCH), desc=f"features {what}", unit="batch"):
            chunk = order[start : start + FEATURE_BATCH]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
            out[chunk] = self.encoder.pooled_features(batch["input_ids"], batch["attention_mask"])
        return out
