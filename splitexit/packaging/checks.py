"""Checks on a described network before anything is exported; each failure is one :class:`PackagingError` line.

The network runs once in torch on its example: block 1 must take the declared
input, block k+1 block k's output, exit k must give one logit per label for
every sample, and a text model's blocks must keep the token axis.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from splitexit.packaging.description import EarlyExitNetwork, PackagingError, Preprocessing, TextPreprocessing
from splitexit.packaging.parity import first_line
from splitexit.packaging.segments import Segment, SegmentedModel


def fused(network: EarlyExitNetwork) -> SegmentedModel:
    """Block k and exit k as one :class:`Segment` each, in eval mode."""
    if not network.blocks:
        raise PackagingError(f"{network.name}: no blocks")
    if len(network.blocks) != len(network.exits):
        raise PackagingError(
            f"{network.name}: {len(network.blocks)} blocks but {len(network.exits)} exit heads; every block needs one"
        )
    if not network.labels or len(set(network.labels)) != len(network.labels):
        raise PackagingError(
            f"{network.name}: labels must be distinct names, one per class, got {list(network.labels)}"
        )
    return SegmentedModel(Segment(block, head) for block, head in zip(network.blocks, network.exits)).eval()


def declared_input(spec: Preprocessing) -> str:
    """Block 1's input as the preprocessing declares it, e.g. ``float32 [B, 1, 28, 28]``."""
    if isinstance(spec, TextPreprocessing):
        return f"int64 token ids [B, T], T at most {spec.max_tokens}"
    return f"float32 [B, {spec.channels}, {spec.height}, {spec.width}]"


def check_inputs(network: EarlyExitNetwork, vocab_size: int | None) -> None:
    """Raise unless the example and every data batch are what the preprocessing makes (text ids below
    ``vocab_size``)."""
    batches = network.data.batches() if network.data else []
    for what, x in [
        ("the example input", network.example),
        *((f"data batch {i}", b) for i, b in enumerate(batches, 1)),
    ]:
        if not fits(x, network.preprocessing, vocab_size):
            kind = (
                f"{str(x.dtype).removeprefix('torch.')} {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            )
            raise PackagingError(
                f"{network.name}: {what} is {kind}, "
                f"but the preprocessing declares {declared_input(network.preprocessing)}"
                + (f" with ids below {vocab_size}" if vocab_size else "")
            )


def fits(x: object, spec: Preprocessing, vocab_size: int | None) -> bool:
    """Whether ``x`` is a non-empty batch of what ``spec`` makes."""
    if not isinstance(x, Tensor) or x.dim() == 0 or len(x) == 0:
        return False
    if isinstance(spec, TextPreprocessing):
        in_range = vocab_size is not None and x.numel() > 0 and int(x.min()) >= 0 and int(x.max()) < vocab_size
        return x.dtype == torch.int64 and x.dim() == 2 and 1 <= x.shape[1] <= spec.max_tokens and in_range
    return x.dtype == torch.float32 and tuple(x.shape[1:]) == (spec.channels, spec.height, spec.width)


def trace_shapes(network: EarlyExitNetwork, model: SegmentedModel) -> list[Tensor]:
    """Run the example through every block and exit: block 1's input and every block's output, in order.

    Raises :class:`PackagingError` naming the first block or exit that does not fit.
    """
    x, inputs = network.example, []
    text = isinstance(network.preprocessing, TextPreprocessing)
    with torch.no_grad():
        for k, segment in enumerate(model.segments, start=1):
            inputs.append(x)
            activation = run_block(network.name, k, segment.body, x, declared_input(network.preprocessing), text)
            try:
                logits = segment.head(activation)
            except Exception as exc:
                raise PackagingError(
                    f"{network.name}: exit {k} does not take block {k}'s output {list(activation.shape)}: "
                    f"{first_line(exc)}"
                ) from None
            if not isinstance(logits, Tensor) or tuple(logits.shape) != (len(x), len(network.labels)):
                shape = list(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise PackagingError(
                    f"{network.name}: exit {k} gives logits {shape} for a batch of {len(x)}; "
                    f"with {len(network.labels)} labels it must give [{len(x)}, {len(network.labels)}]"
                )
            x = activation
    return [*inputs, x]


def run_block(name: str, k: int, block: nn.Module, x: Tensor, declared: str, text: bool = False) -> Tensor:
    """Block k's output on ``x`` (block 1's input is ``declared``), checked; :class:`PackagingError` if it does not
    take ``x`` or returns no fitting activation."""
    what = f"the declared input {declared}" if k == 1 else f"block {k - 1}'s output {list(x.shape)}"
    try:
        activation = block(x)
    except Exception as exc:
        raise PackagingError(f"{name}: block {k} does not take {what}: {first_line(exc)}") from None
    check_activation(name, k, x, activation, text)
    return activation


def check_activation(name: str, k: int, x: Tensor, activation: object, text: bool) -> None:
    """Raise unless block k's output is one float32 tensor with the batch axis (and a text's token axis) kept."""
    if not isinstance(activation, Tensor):
        raise PackagingError(f"{name}: block {k} returns {type(activation).__name__}, not one tensor")
    if activation.dtype != torch.float32:
        raise PackagingError(f"{name}: block {k} returns {activation.dtype}; activations must be torch.float32")
    if activation.dim() < 1 or activation.shape[0] != len(x):
        raise PackagingError(f"{name}: block {k} turns a batch of {len(x)} into {list(activation.shape)}")
    if text and (activation.dim() < 3 or activation.shape[1] != x.shape[1]):
        raise PackagingError(
            f"{name}: block {k} returns {list(activation.shape)} for {x.shape[1]} tokens; "
            "a text block must return [B, T, hidden], T the input's tokens"
        )
