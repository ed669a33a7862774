"""The Fashion-MNIST early-exit CNN: six residual blocks with an exit head after each.

Block k (1-based) maps its input to ``(logits, activation)``; block 1 also holds the
stem convolution. Shapes per sample::

    input 1x28x28 -> b1 16x14x14 -> b2 24x14x14 -> b3 32x7x7
                  -> b4 48x7x7   -> b5 64x7x7   -> b6 96x4x4

Block 1 downsamples right after the stem: full-resolution residual convs cost the
most CPU time per MAC, and this layout reaches the same accuracy in fewer minutes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from training.segments import Segment, SegmentedModel

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
STEM_WIDTH = 16
WIDTHS = (16, 24, 32, 48, 64, 96)
STRIDES = (2, 1, 2, 1, 1, 2)
HEAD_GRID = 2  # exit heads average-pool every map to HEAD_GRID x HEAD_GRID
STATE_DICT_FILE = "state_dict.pt"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ExitHead(nn.Module):
    """Average-pool a ``size x size`` map to a ``HEAD_GRID`` square, then a linear classifier."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        stride = size // HEAD_GRID
        self.pool = nn.AvgPool2d(kernel_size=size - (HEAD_GRID - 1) * stride, stride=stride)
        self.fc = nn.Linear(channels * HEAD_GRID * HEAD_GRID, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class EarlyExitCNN(SegmentedModel):
    """ResNet-style CNN with ``len(WIDTHS)`` blocks and an exit after every block."""

    def __init__(self) -> None:
        channels, size = INPUT_SHAPE[0], INPUT_SHAPE[1]
        stem = nn.Sequential(
            nn.Conv2d(channels, STEM_WIDTH, 3, 1, 1, bias=False),
            nn.BatchNorm2d(STEM_WIDTH),
            nn.ReLU(),
        )
        segments = []
        channels = STEM_WIDTH
        for k, (width, stride) in enumerate(zip(WIDTHS, STRIDES, strict=True)):
            body: nn.Module = BasicBlock(channels, width, stride)
            if k == 0:
                body = nn.Sequential(stem, body)
            size = (size - 1) // stride + 1
            segments.append(Segment(body, ExitHead(width, size)))
            channels = width
        super().__init__(segments)

    def block_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per-sample ``(input shape, activation shape)`` of every block."""
        shapes = []
        x = torch.zeros(1, *INPUT_SHAPE)
        with torch.no_grad():
            for segment in self.segments:
                _, activation = segment(x)
                shapes.append((tuple(x.shape[1:]), tuple(activation.shape[1:])))
                x = activation
        return shapes

    def macs_per_block(self) -> list[int]:
        """Multiply-accumulates per sample of each block plus its exit head (conv and linear)."""
        counts = [0] * self.num_blocks
        hooks = []
        for k, segment in enumerate(self.segments):
            for module in segment.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    hooks.append(module.register_forward_hook(_mac_counter(counts, k)))
        was_training = self.training
        try:
            with torch.no_grad():
                self.eval()(torch.zeros(1, *INPUT_SHAPE))
        finally:
            self.train(was_training)
            for hook in hooks:
                hook.remove()
        return counts


def _mac_counter(counts: list[int], k: int):
    """A forward hook adding one conv/linear layer's per-sample MACs to ``counts[k]``."""

    def hook(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_output = module.in_channels // module.groups * kh * kw
        else:
            per_output = module.in_features
        counts[k] += output[0].numel() * per_output

    return hook


def load_reference(package_dir: Path) -> EarlyExitCNN:
    """The trained model from ``package_dir/state_dict.pt``, in eval mode."""
    model = EarlyExitCNN()
    state = torch.load(package_dir / STATE_DICT_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
