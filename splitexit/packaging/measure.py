"""What one segment costs per sample: multiply-accumulates (block + exit head) and the activation's bytes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class SegmentCost:
    """Per sample: MACs of the block and its exit head, and the bytes of the activation it hands on."""

    macs: int
    activation_bytes: int


def segment_costs(segments: list[nn.Module], x: Tensor) -> list[SegmentCost]:
    """Each segment's cost on ``x``, one sample (a text model's at its token limit), chained as served.

    MACs are half of what ``torch.utils.flop_counter`` counts: matrix products and
    convolutions, not element-wise work.
    """
    costs = []
    with torch.no_grad():
        for segment in segments:
            with FlopCounterMode(display=False) as counter:
                _, x = segment(x)
            costs.append(
                SegmentCost(macs=counter.get_total_flops() // 2, activation_bytes=x.numel() * x.element_size())
            )
    return costs
