"""A pretrained text encoder from a local folder, cut into its layers.

A folder in the usual Hugging Face layout (``config.json``, ``model.safetensors``,
``tokenizer.json``) is loaded with ``transformers``, offline, in eval mode and
with the plain ("eager") attention that ONNX exports exactly. Two families are
known: BERT (all-MiniLM-L6-v2) and MPNet (all-mpnet-base-v2, whose layers add a
relative position bias that the encoder normally computes once for all of them:
here each layer computes it itself, so a layer runs on its own).

:meth:`Encoder.bodies` gives one module per layer, ``hidden -> hidden``; the
first also holds the embeddings, so it takes int64 token ids ``[N, T]``. They
take no attention mask: serving runs unpadded samples, where the mask is all
ones. :meth:`Encoder.pooled_features` is what training needs from a padded
batch instead: every layer's masked mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from splitexit.shared.manifest import sha256_of

if TYPE_CHECKING:  # transformers is heavy: imported only where a model is loaded
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
REQUIRED_FILES = ("config.json", WEIGHTS_FILE, TOKENIZER_FILE)


class EncoderError(ValueError):
    """A folder that is not a usable encoder; the message says what is missing or unsupported."""


def mean_pool(hidden: Tensor, mask: Tensor | None = None) -> Tensor:
    """``[N, T, H]`` -> ``[N, H]``: the mean over the positions ``mask`` keeps (all if None)."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class EncoderLayer(nn.Module):
    """A BERT layer as ``hidden -> hidden`` (no mask: every position attends)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden: Tensor) -> Tensor:
        return self.layer(hidden)[0]


class RelativeBiasLayer(nn.Module):
    """An MPNet layer as ``hidden -> hidden``, computing the encoder's shared relative position bias itself."""

    def __init__(self, layer: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.relative_attention_bias = encoder.relative_attention_bias
        self._encoder_class = type(encoder)

    def relative_position_bucket(self, relative_position: Tensor, num_buckets: int = 32) -> Tensor:
        return self._encoder_class.relative_position_bucket(relative_position, num_buckets=num_buckets)

    def forward(self, hidden: Tensor) -> Tensor:
        bias = self._encoder_class.compute_position_bias(self, hidden)  # reads only the two members above
        return self.layer(hidden, position_bias=bias)[0]


LAYER_WRAPPERS = {"bert": lambda layer, encoder: EncoderLayer(layer), "mpnet": RelativeBiasLayer}


@dataclass
class Encoder:
    """A loaded encoder and the folder it came from."""

    folder: Path
    model: PreTrainedModel = field(repr=False)

    @property
    def hidden(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def ffn_width(self) -> int:
        return int(self.model.config.intermediate_size)

    @property
    def vocab_size(self) -> int:
        return int(self.model.embeddings.word_embeddings.num_embeddings)

    @cached_property
    def weights_sha256(self) -> str:
        return sha256_of(self.folder / WEIGHTS_FILE)

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the encoder was trained with, as ``transformers`` loads it (what training uses)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.folder, local_files_only=True)

    def bodies(self) -> list[nn.Module]:
        """One module per layer, ``hidden -> hidden``; the first also embeds the ids."""
        wrap = LAYER_WRAPPERS[self.model.config.model_type]
        layers = [wrap(layer, self.model.encoder) for layer in self.model.encoder.layer]
        return [nn.Sequential(self.model.embeddings, layers[0]), *layers[1:]]

    @torch.no_grad()
    def pooled_features(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Masked mean of every layer's hidden states for a padded batch: ``[N, num_layers, hidden]``."""
        hidden = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return torch.stack([mean_pool(h, mask) for h in hidden[1:]], dim=1)


def load_encoder(folder: Path) -> Encoder:
    """The encoder in ``folder``; :class:`EncoderError` if a file is missing or the family is unknown."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise EncoderError(f"{folder} is not an encoder folder: it lacks {', '.join(missing)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type not in LAYER_WRAPPERS:
        raise EncoderError(
            f"{folder} holds a {config.model_type!r} encoder; the known families are {', '.join(LAYER_WRAPPERS)}"
        )
    model = AutoModel.from_pretrained(
        folder, local_files_only=True, attn_implementation="eager", add_pooling_layer=False
    )
    return Encoder(folder, model.eval())
