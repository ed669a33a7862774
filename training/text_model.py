"""A pretrained text encoder with an exit classifier after each of its transformer layers.

The backbone (all-MiniLM-L6-v2, all-mpnet-base-v2 or any encoder folder
:mod:`training.encoders` loads) stays frozen: only the exit heads are trained,
so a package needs only its small head weights in git and rebuilds the ONNX
slices from the installed backbone.

Block k (1-based) is layer k plus exit head k; block 1 also holds the
embeddings, so it takes int64 token ids ``[N, T]`` and every block hands on
hidden states ``[N, T, hidden]``::

    ids -> [embeddings + layer 1 | head 1] -> [layer 2 | head 2] -> ... -> [layer L | head L]

The segments take no attention mask: serving runs one unpadded sample at a
time, where the mask is all ones and changes nothing. So a batch through the
segments must hold sequences of one length. Training pools the features from
padded batches with the real mask instead (:meth:`Encoder.pooled_features`);
heads pool the same way, masked or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from training.backbones import BackboneUnavailable, installed_dir, minilm_dir
from training.encoders import Encoder, load_encoder, mean_pool
from training.segments import Segment, SegmentedModel

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

HEAD_WIDTH = 256
HEADS_FILE = "heads.safetensors"
BACKBONE_KEY = "backbone"  # heads.safetensors metadata: the installed backbone's name (training.backbones)
BACKBONE_SHA256_KEY = "backbone_sha256"  # ... and the sha256 of the weights the heads were trained on


class MeanPoolHead(nn.Module):
    """An exit: masked mean over token positions, then a one-hidden-layer MLP."""

    def __init__(self, num_classes: int, hidden: int, *, width: int = HEAD_WIDTH, dropout: float = 0.1) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, num_classes)
        )

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.classifier(mean_pool(hidden, mask))


def exit_heads(num_classes: int, num_layers: int, hidden: int) -> nn.ModuleList:
    return nn.ModuleList(MeanPoolHead(num_classes, hidden) for _ in range(num_layers))


class EarlyExitEncoder(SegmentedModel):
    """The backbone cut into one segment per layer, each ``x -> (logits, hidden states)``."""

    def __init__(self, encoder: Encoder, heads: nn.ModuleList) -> None:
        super().__init__(Segment(body, head) for body, head in zip(encoder.bodies(), heads, strict=True))


def heads_metadata(package_dir: Path) -> dict[str, str]:
    with safe_open(package_dir / HEADS_FILE, framework="pt") as f:
        return f.metadata() or {}


def load_heads(package_dir: Path, num_classes: int) -> nn.ModuleList:
    """The package's exit heads; their number and width come from the saved tensors."""
    state = load_file(package_dir / HEADS_FILE)
    num_layers = len({name.split(".")[0] for name in state})
    heads = exit_heads(num_classes, num_layers, state["0.classifier.1.weight"].shape[1])
    heads.load_state_dict(state)
    return heads.eval()


def package_backbone_dir(package_dir: Path) -> Path:
    """The installed folder of the backbone a package's heads name."""
    name = heads_metadata(package_dir).get(BACKBONE_KEY)
    if name is None:
        raise BackboneUnavailable(f"{package_dir / HEADS_FILE} does not name its backbone (metadata {BACKBONE_KEY!r})")
    return installed_dir(name)


def load_reference(package_dir: Path, num_classes: int, encoder: Encoder | None = None) -> EarlyExitEncoder:
    """The single-process torch model of a text package: the backbone plus its trained heads."""
    encoder = encoder or load_encoder(package_backbone_dir(package_dir))
    return EarlyExitEncoder(encoder, load_heads(package_dir, num_classes)).eval()


def load_backbone() -> PreTrainedModel:
    """all-MiniLM-L6-v2's transformers model, as the MiniLM packages were trained on."""
    return load_encoder(minilm_dir()).model


def load_hf_tokenizer() -> PreTrainedTokenizerFast:
    """all-MiniLM-L6-v2's tokenizer, as ``transformers`` loads it (what training uses)."""
    return load_encoder(minilm_dir()).tokenizer()
