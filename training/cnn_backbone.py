"""Exits for a torch CNN: a head after every block, trained on a folder of labelled images, and the package.

    python -m training.backbone --cnn FILE.py:FUNCTION --images DIR --channels 1 --size 28 \\
        --mean 0.286 --std 0.353 --out models/NAME

``FUNCTION()`` (no arguments) returns the trained CNN as its blocks, in order: an
``nn.Sequential`` (each child is one block, so group layers into child
``Sequential`` s to choose where the exits go) or a list, tuple or
``nn.ModuleList`` of modules. Block 1 takes the preprocessed image, float32
``[B, C, H, W]``; block k+1 takes block k's output, which must be one float32
tensor with the batch axis first. The blocks are frozen (eval mode, no gradients).

``DIR`` holds one subfolder per class (its name is the label; labels sorted), each
with images in any format Pillow reads (dot files are skipped). Every image is
preprocessed exactly as the tiers will: converted to ``--channels``, resized to
``--size`` (bilinear), scaled to [0, 1], then ``(x - mean) / std``
(:mod:`splitexit.shared.preprocess`). The images are split seeded into train /
calibration / test (70 / 15 / 15, :func:`training.heads.seeded_split`).

Exit k is :class:`PooledLinear`: the mean over every axis after the channels
(global average pooling of a ``[B, C, H, W]`` map; a ``[B, D]`` output as it is),
then one linear layer to the classes. Every block's pooled output on the train
split is computed once (in memory, not cached), the heads train on those
(:data:`HEADS`: 100 epochs of AdamW at 1e-2, seconds), and
the blocks with their heads go to :func:`splitexit.packaging.write_package`
(ONNX segments checked against torch on the test split, exit accuracy, MACs,
``heads.safetensors`` shipped along), then every exit's temperature is fitted on
the calibration split. The package is assembled beside ``--out`` and moved into
place complete.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from splitexit.packaging import CheckData, EarlyExitNetwork, ImageInput, PackagingError, write_package
from splitexit.packaging.checks import declared_input, run_block
from splitexit.packaging.command import call_target
from splitexit.packaging.writer import replace_folder
from splitexit.shared.errors import InvalidInput
from splitexit.shared.manifest import Manifest, load_manifest
from splitexit.shared.preprocess import open_image
from training.calibration import Split
from training.heads import (
    CALIBRATION_SPLIT,
    TEST_SPLIT,
    DataError,
    HeadConfig,
    fit_heads,
    seeded_split,
    summary,
)
from training.heads import evaluate_and_calibrate as finish
from training.text_model import HEADS_FILE

IMAGE_BATCH = 64
HEADS = HeadConfig(epochs=100, lr=1e-2, weight_decay=1e-4)  # linear heads on pooled maps: a bolder rate than text's
BLOCKS_WANTED = "return the CNN's blocks in order: an nn.Sequential, or a list of nn.Module"


class PooledLinear(nn.Module):
    """An exit: the mean over every axis after the channels, then one linear layer."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(pooled(x))


def pooled(x: Tensor) -> Tensor:
    """``[B, C, ...]`` -> ``[B, C]``: the mean over the axes after the channels."""
    return x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x


def load_blocks(target: str) -> list[nn.Module]:
    """The blocks ``FILE.py:FUNCTION`` returns, frozen; :class:`PackagingError` (one line) for anything else."""
    made = call_target(target, example="my_cnn.py:blocks")
    if not isinstance(made, (nn.Sequential, nn.ModuleList, list, tuple)):
        raise PackagingError(f"{target} returned {type(made).__name__}; {BLOCKS_WANTED}")
    blocks = list(made)
    if not blocks:
        raise PackagingError(f"{target} returned no blocks; {BLOCKS_WANTED}")
    for k, block in enumerate(blocks, start=1):
        if not isinstance(block, nn.Module):
            raise PackagingError(f"{target} returned a {type(block).__name__} as block {k}; {BLOCKS_WANTED}")
        block.eval().requires_grad_(False)
    return blocks


def read_image_folder(folder: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """A folder of class subfolders -> (sorted labels, image files, their label indices); every image's header
    is read, so a file that is no image is a :class:`DataError` before any work."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"{folder} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "a classifier needs at least two, one subfolder of images per class"
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise DataError(f"{folder / name} holds no images")
        for path in files:
            with named(path):
                open_image(path.read_bytes())
        paths += files
        labels += [label] * len(files)
    return classes, paths, np.array(labels, dtype=np.int64)


@contextmanager
def named(path: Path) -> Iterator[None]:
    """An unreadable image as a :class:`DataError` naming its file."""
    try:
        yield
    except InvalidInput as exc:
        raise DataError(f"{path} is not an image: {exc}") from None


def decode(paths: Sequence[Path], spec: ImageInput) -> Tensor:
    """Image files -> float32 ``[N, C, H, W]``, as the tiers preprocess them."""
    arrays = []
    for path in paths:
        with named(path):
            arrays.append(open_image(path.read_bytes()).tensor(spec))
    return torch.from_numpy(np.concatenate(arrays))


def block_widths(name: str, blocks: Sequence[nn.Module], example: Tensor, spec: ImageInput) -> list[int]:
    """Every block's channels (axis 1 of its output) on ``example``; one :class:`PackagingError` line naming the
    block that does not take its input."""
    x, widths = example, []
    with torch.no_grad():
        for k, block in enumerate(blocks, start=1):
            x = run_block(name, k, block, x, declared_input(spec))
            if x.dim() < 2:
                raise PackagingError(f"{name}: block {k} returns {list(x.shape)}; an exit needs [B, channels, ...]")
            widths.append(int(x.shape[1]))
    return widths


@torch.no_grad()
def block_features(blocks: Sequence[nn.Module], paths: Sequence[Path], spec: ImageInput, what: str) -> list[Tensor]:
    """Every block's pooled output ``[N, C_k]`` on the images, in batches of ``IMAGE_BATCH``."""
    chunks: list[list[Tensor]] = [[] for _ in blocks]
    for start in tqdm(range(0, len(paths), IMAGE_BATCH), desc=f"features {what}", unit="batch"):
        x = decode(paths[start : start + IMAGE_BATCH], spec)
        for k, block in enumerate(blocks):
            x = block(x)
            chunks[k].append(pooled(x))
    return [torch.cat(chunk) for chunk in chunks]


def package_cnn(target: str, images: Path, spec: ImageInput, out: Path, cfg: HeadConfig = HEADS) -> Manifest:
    """Train an exit after every block ``target`` returns on the images in ``images`` and write the package
    ``out`` (named after it)."""
    started = time.perf_counter()
    name = out.name
    blocks = load_blocks(target)
    classes, paths, labels = read_image_folder(images)
    fit, calibration, test = seeded_split(len(paths), cfg.seed)
    test_x, test_y = decode([paths[i] for i in test], spec), torch.from_numpy(labels[test])
    widths = block_widths(name, blocks, test_x[:2], spec)
    features = block_features(blocks, [paths[i] for i in fit], spec, f"{name}-train")
    heads = fit_heads(
        lambda: nn.ModuleList(PooledLinear(w, len(classes)) for w in widths),
        features,
        torch.from_numpy(labels[fit]),
        cfg,
        name,
    )
    evaluation = {
        "backbone": target,
        "blocks": len(blocks),
        "channels": widths,
        "train_samples": len(fit),
        "test_split": TEST_SPLIT,
        "test_samples": len(test),
        "seed": cfg.seed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{name}.cnn-") as tmp:
        save_file(heads.state_dict(), Path(tmp) / HEADS_FILE)
        network = EarlyExitNetwork(
            name=name,
            blocks=blocks,
            exits=list(heads),
            example=test_x[:1],
            labels=classes,
            preprocessing=spec,
            data=CheckData(test_x, test_y),
            files=[Path(tmp) / HEADS_FILE],
        )
        package = Path(tmp) / name
        manifest = write_package(network, package)
        calibration_x = decode([paths[i] for i in calibration], spec).numpy()
        calibration_split = Split([calibration_x], labels[calibration], CALIBRATION_SPLIT)
        finish(package, manifest, evaluation, calibration_split, Split([test_x.numpy()], labels[test], TEST_SPLIT))
        replace_folder(package, out)
    print(summary(manifest, started), flush=True)
    return load_manifest(out)


def load_heads(package_dir: Path, channels: Sequence[int], num_classes: int) -> nn.ModuleList:
    """A CNN package's trained exits as torch modules, from its ``heads.safetensors``."""
    heads = nn.ModuleList(PooledLinear(c, num_classes) for c in channels)
    heads.load_state_dict(load_file(package_dir / HEADS_FILE))
    return heads.eval()
