"""The tutorial's network: three small conv blocks with an exit head after each, trained for a few seconds.

    splitexit package docs/tutorial/tiny_net.py:describe --out /tmp/tutorial-models/tiny-fmnist

:func:`describe` trains it on Fashion-MNIST (``lab.fashion_mnist``, from Debian's
``dataset-fashion-mnist``) and returns what ``splitexit package`` needs: the
blocks, their exits, an example input, the labels, the preprocessing, and test
images with their labels to check ONNX against torch and measure every exit on.
"""

from __future__ import annotations

import torch
from torch import nn

from lab import fashion_mnist
from splitexit.packaging import CheckData, EarlyExitNetwork, ImageInput
from splitexit.shared.preprocess import normalize_images

PREPROCESSING = ImageInput(channels=1, height=28, width=28, mean=0.286, std=0.353)
WIDTHS = (8, 16, 32)
MAP_SIZES = (14, 7, 4)  # each block halves the 28x28 image (rounding up)
TRAIN_STEPS = 300  # a few seconds on one core
TRAIN_IMAGES = 20_000
CHECK_IMAGES = 1_000


def conv_block(in_channels: int, out_channels: int) -> nn.Module:
    """A 3x3 convolution that halves the map, then ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.ReLU())


def exit_head(channels: int, size: int) -> nn.Module:
    """The whole ``channels x size x size`` map into one linear layer to the 10 classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, len(fashion_mnist.LABELS)))


def images(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` images of a split, preprocessed exactly as the device will, and their labels."""
    pixels, labels = fashion_mnist.load(split)
    x = torch.from_numpy(normalize_images(pixels[:count], PREPROCESSING))
    return x, torch.from_numpy(labels[:count].astype("int64"))


def train(blocks: nn.ModuleList, exits: nn.ModuleList) -> None:
    """Minimise the summed cross-entropy of every exit, ``TRAIN_STEPS`` batches of 128, seeded, on one thread.

    One thread and fixed seeds: every run gives the same weights, so a test can rebuild them.
    """
    x, y = images("train", TRAIN_IMAGES)
    optimizer = torch.optim.Adam([*blocks.parameters(), *exits.parameters()], lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(TRAIN_STEPS):
            batch = torch.randint(len(x), (128,), generator=generator)
            activation, loss = x[batch], torch.zeros(())
            for block, head in zip(blocks, exits):
                activation = block(activation)
                loss = loss + nn.functional.cross_entropy(head(activation), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)


def describe() -> EarlyExitNetwork:
    """The trained network, described for ``splitexit package``."""
    torch.manual_seed(0)
    channels = (PREPROCESSING.channels, *WIDTHS)
    blocks = nn.ModuleList(conv_block(a, b) for a, b in zip(channels, channels[1:]))
    exits = nn.ModuleList(exit_head(width, size) for width, size in zip(WIDTHS, MAP_SIZES))
    train(blocks, exits)
    test_x, test_y = images("test", CHECK_IMAGES)
    return EarlyExitNetwork(
        name="tiny-fmnist",
        blocks=list(blocks),
        exits=list(exits),
        example=test_x[:1],
        labels=list(fashion_mnist.LABELS),
        preprocessing=PREPROCESSING,  # ImageInput(channels=1, height=28, width=28, mean=0.286, std=0.353)
        data=CheckData(test_x, test_y),  # 1,000 test images: parity with torch, and each exit's accuracy
    )
