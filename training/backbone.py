"""Exits for a pretrained encoder: train a head after every layer on labelled texts, and package the result.

    python -m training.backbone --encoder DIR --data FILE.jsonl --out models/NAME

``DIR`` is a local encoder folder (``config.json``, ``model.safetensors``,
``tokenizer.json``: BERT or MPNet, see :mod:`training.encoders`); ``FILE`` is a
JSONL file (one ``{"text": ..., "label": ...}`` object a line) or a CSV with a
header (columns ``text`` and ``label``; ``--text-key``/``--label-key`` name
others). Labels may be any strings; the package's classes are them, sorted.
The rows are split seeded into train / calibration / test (70/15/15 by
default). The backbone stays frozen: every layer's pooled features are
extracted once (cached under ``$SPLITEXIT_CACHE_DIR/text-features``), the heads
train on them in seconds, the segments are exported to ONNX and checked against
torch, exit accuracy is measured through ONNX on the test split, and every
exit's softmax temperature is fitted on the calibration split
(:mod:`training.calibration`).

:func:`package_encoder` is the function behind the command.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from lab.fashion_mnist import default_cache_dir
from lab.text_data import LabelledText, split_indices
from splitexit.shared.manifest import Manifest, PackageError, TextInput, sha256_of
from splitexit.shared.tokenizer import TextTokenizer
from training.backbones import BackboneUnavailable
from training.calibration import EVALUATION_FILE, calibrate_package
from training.encoders import TOKENIZER_FILE, Encoder, EncoderError, load_encoder
from training.features import Featurizer
from training.splits import TextSplits, labels_of, text_split
from training.text_export import export_package
from training.text_model import BACKBONE_KEY, BACKBONE_SHA256_KEY, HEADS_FILE, exit_heads
from training.train import seed_everything

MAX_TOKENS = 128
PARITY_SAMPLES = 16
CALIBRATION_FRACTION = 0.15
TEST_FRACTION = 0.15


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """Hyperparameters of the exit heads' training (pooled features, so it is quick)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0


class DataError(ValueError):
    """A labelled data file that cannot be read; the message names the file and the line."""


def train_heads(features: Tensor, labels: Tensor, num_classes: int, cfg: HeadConfig, what: str) -> nn.ModuleList:
    """One exit head per layer, each on its layer's pooled features ``[N, L, H]``, with AdamW and cosine decay."""
    seed_everything(cfg.seed)
    heads = exit_heads(num_classes, features.shape[1], features.shape[2])
    classifiers = nn.ModuleList(head.classifier for head in heads)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(classifiers.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = -(-len(features) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
    heads.train()
    bar = tqdm(range(cfg.epochs), desc=f"heads {what}", unit="epoch")
    for _ in bar:
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for step in range(steps):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = features[batch], labels[batch]
            loss = sum(F.cross_entropy(c(x[:, k]), y) for k, c in enumerate(classifiers))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        bar.set_postfix(loss=f"{total / steps / len(classifiers):.3f}")
    return heads.eval()


@torch.no_grad()
def exit_accuracy(heads: nn.ModuleList, features: Tensor, labels: Tensor) -> list[float]:
    """Accuracy of every exit on pooled features (the torch path; export re-measures through ONNX)."""
    return [
        round(float((h.classifier(features[:, k]).argmax(1) == labels).float().mean()), 4) for k, h in enumerate(heads)
    ]


def write_package(
    out: Path,
    name: str,
    heads: nn.ModuleList,
    labels: Sequence[str],
    encoder: Encoder,
    backbone: str,
    splits: TextSplits,
    evaluation: dict[str, object],
) -> Manifest:
    """Heads, tokenizer, ONNX slices, manifest, evaluation.json with the exits calibrated, and ``integrity.json``."""
    out.mkdir(parents=True, exist_ok=True)
    metadata = {BACKBONE_KEY: backbone, BACKBONE_SHA256_KEY: encoder.weights_sha256}
    save_file(heads.state_dict(), out / HEADS_FILE, metadata=metadata)
    shutil.copyfile(encoder.folder / TOKENIZER_FILE, out / TOKENIZER_FILE)
    spec = TextInput(tokenizer=TOKENIZER_FILE, tokenizer_sha256=sha256_of(out / TOKENIZER_FILE), max_tokens=MAX_TOKENS)
    tokenizer = TextTokenizer.from_package(out, spec)
    test = text_split(splits.test, tokenizer, splits.test_name)
    manifest = export_package(
        out, name, labels, spec, test.samples, test.labels, test.samples[:PARITY_SAMPLES], encoder
    )
    (out / EVALUATION_FILE).write_text(
        json.dumps({**evaluation, "onnx_exit_accuracy": manifest.exit_accuracy}, indent=2) + "\n"
    )
    calibrate_package(out, text_split(splits.calibration, tokenizer, splits.calibration_name), test)  # + integrity.json
    return manifest


def package_encoder(
    encoder_dir: Path,
    splits: TextSplits,
    labels: Sequence[str],
    out: Path,
    cfg: HeadConfig = HeadConfig(),
    backbone: str | None = None,
) -> Manifest:
    """Train exit heads on ``encoder_dir``'s frozen layers and write the package ``out`` (named after it).

    ``backbone`` names the installed backbone (:mod:`training.backbones`) that
    ``make models`` rebuilds the slices from; by default the encoder folder's name.
    """
    started = time.perf_counter()
    encoder = load_encoder(encoder_dir)
    featurize = Featurizer(encoder, MAX_TOKENS, default_cache_dir() / "text-features")
    features = featurize([s.text for s in splits.train], f"{out.name}-train")
    train_labels = torch.from_numpy(labels_of(splits.train))
    heads = train_heads(features, train_labels, len(labels), cfg, out.name)
    evaluation = {
        "backbone": backbone or encoder_dir.name,
        "layers": encoder.num_layers,
        "hidden": encoder.hidden,
        "train_samples": len(splits.train),
        "test_split": splits.test_name,
        "test_samples": len(splits.test),
        "seed": cfg.seed,
    }
    manifest = write_package(out, out.name, heads, labels, encoder, backbone or encoder_dir.name, splits, evaluation)
    print(
        f"{manifest.name}: exit accuracy on the test split (ONNX) {manifest.exit_accuracy}; "
        f"packaged in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return manifest


def read_labelled(path: Path, text_key: str = "text", label_key: str = "label") -> tuple[list[str], list[LabelledText]]:
    """A JSONL or CSV file of labelled texts -> (sorted class names, samples); :class:`DataError` names a bad row."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows: list[tuple[int, dict[str, object]]] = []
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            rows = list(enumerate(csv.DictReader(f), start=2))
        else:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append((number, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
    pairs = []
    for number, row in rows:
        if not isinstance(row, dict) or not str(row.get(text_key) or "").strip() or row.get(label_key) in (None, ""):
            raise DataError(f"{path}:{number}: a row needs a non-empty {text_key!r} and {label_key!r}")
        pairs.append((str(row[text_key]).strip(), str(row[label_key])))
    classes = sorted({label for _, label in pairs})
    if len(classes) < 2:
        raise DataError(f"{path}: {len(pairs)} rows with {len(classes)} label(s); a classifier needs at least two")
    index = {label: i for i, label in enumerate(classes)}
    return classes, [LabelledText(text, index[label]) for text, label in pairs]


def seeded_splits(samples: Sequence[LabelledText], seed: int) -> TextSplits:
    """Train / calibration / test, seeded, ``1 - 2 x 15 %`` / 15 % / 15 %."""
    fit, held = split_indices(len(samples), CALIBRATION_FRACTION + TEST_FRACTION, seed)
    calibration, test = np.array_split(held, 2)
    if min(len(fit), len(calibration), len(test)) == 0:
        raise DataError(f"{len(samples)} rows are too few to split into train, calibration and test")
    return TextSplits(
        train=[samples[i] for i in fit],
        calibration=[samples[i] for i in calibration],
        test=[samples[i] for i in test],
        calibration_name="seeded 15 % calibration split",
        test_name="seeded 15 % test split",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, required=True, help="local encoder folder")
    parser.add_argument("--data", type=Path, required=True, help="JSONL or CSV of text and label")
    parser.add_argument("--out", type=Path, required=True, help="the package folder to write, e.g. models/NAME")
    parser.add_argument("--text-key", default="text")
    parser.add_argument("--label-key", default="label")
    parser.add_argument("--epochs", type=int, default=HeadConfig.epochs)
    parser.add_argument("--seed", type=int, default=HeadConfig.seed)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        classes, samples = read_labelled(args.data, args.text_key, args.label_key)
        splits = seeded_splits(samples, args.seed)
        package_encoder(args.encoder, splits, classes, args.out, HeadConfig(epochs=args.epochs, seed=args.seed))
    except (DataError, EncoderError, BackboneUnavailable, PackageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
