"""Exit heads on a frozen backbone, shared by its two kinds: a text encoder and a torch CNN.

Each head has a ``classifier`` that maps its exit's pooled features ``[N, D_k]``
to logits; the backbone never trains, so the features are computed once and only
the classifiers train, all exits together, in seconds. The labelled data is split
seeded into train / calibration / test (70 / 15 / 15); after export every exit's
temperature is fitted on the calibration split (:mod:`training.calibration`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from lab.text_data import split_indices
from splitexit.shared.manifest import Manifest
from training.calibration import EVALUATION_FILE, Split, calibrate_package
from training.train import seed_everything

CALIBRATION_FRACTION = 0.15
TEST_FRACTION = 0.15
CALIBRATION_SPLIT = "seeded 15 % calibration split"
TEST_SPLIT = "seeded 15 % test split"


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """Hyperparameters of the exit heads' training (pooled features, so it is quick)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0


class DataError(ValueError):
    """Labelled data that cannot be used; the message names the file (and line) and says why, in one line."""


def fit_heads(
    make_heads: Callable[[], nn.ModuleList], features: Sequence[Tensor], labels: Tensor, cfg: HeadConfig, what: str
) -> nn.ModuleList:
    """Seed, make the heads, and train head k's classifier on ``features[k]`` with AdamW and cosine decay."""
    seed_everything(cfg.seed)
    heads = make_heads()
    classifiers = nn.ModuleList(head.classifier for head in heads)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(classifiers.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = -(-len(labels) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
    heads.train()
    bar = tqdm(range(cfg.epochs), desc=f"heads {what}", unit="epoch")
    for _ in bar:
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for step in range(steps):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            y = labels[batch]
            loss = sum(F.cross_entropy(c(x[batch]), y) for c, x in zip(classifiers, features, strict=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        bar.set_postfix(loss=f"{total / steps / len(classifiers):.3f}")
    return heads.eval()


@torch.no_grad()
def heads_accuracy(heads: nn.ModuleList, features: Sequence[Tensor], labels: Tensor) -> list[float]:
    """Accuracy of every exit on pooled features (the torch path; export re-measures through ONNX)."""
    return [
        round(float((h.classifier(x).argmax(1) == labels).float().mean()), 4)
        for h, x in zip(heads, features, strict=True)
    ]


def seeded_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / calibration / test, seeded, ``1 - 2 x 15 %`` / 15 % / 15 %."""
    fit, held = split_indices(count, CALIBRATION_FRACTION + TEST_FRACTION, seed)
    calibration, test = np.array_split(held, 2)
    if min(len(fit), len(calibration), len(test)) == 0:
        raise DataError(f"{count} samples are too few to split into train, calibration and test")
    return fit, calibration, test


def evaluate_and_calibrate(
    package_dir: Path, manifest: Manifest, evaluation: dict[str, object], calibration: Split, test: Split
) -> None:
    """``evaluation.json`` (``evaluation`` and the ONNX exit accuracy), then every exit calibrated (+ integrity)."""
    report = {**evaluation, "onnx_exit_accuracy": manifest.exit_accuracy}
    (package_dir / EVALUATION_FILE).write_text(json.dumps(report, indent=2) + "\n")
    calibrate_package(package_dir, calibration, test)


def summary(manifest: Manifest, started: float) -> str:
    """The line the commands print at the end."""
    return (
        f"{manifest.name}: exit accuracy on the test split (ONNX) {manifest.exit_accuracy}; "
        f"packaged in {time.perf_counter() - started:.0f} s"
    )
