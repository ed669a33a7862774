"""Exits for a pretrained backbone: train a head after every layer or block, with the backbone frozen, and package.

    python -m training.backbone --encoder DIR --data FILE.jsonl --out models/NAME
    python -m training.backbone --cnn FILE.py:FUNCTION --images DIR --channels 1 --size 28 --out models/NAME

The second form, a torch CNN and a folder of images per class, is
:mod:`training.cnn_backbone`; the rest of this page is about the first.

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
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from lab.fashion_mnist import default_cache_dir
from lab.text_data import LabelledText
from splitexit.packaging import ImageInput, PackagingError
from splitexit.shared.manifest import Manifest, PackageError, TextInput, sha256_of
from splitexit.shared.tokenizer import TextTokenizer
from training.backbones import BackboneUnavailable
from training.cnn_backbone import HEADS as CNN_HEADS
from training.cnn_backbone import package_cnn
from training.encoders import TOKENIZER_FILE, Encoder, EncoderError, load_encoder
from training.features import Featurizer
from training.heads import (
    CALIBRATION_SPLIT,
    TEST_SPLIT,
    DataError,
    HeadConfig,
    evaluate_and_calibrate,
    fit_heads,
    heads_accuracy,
    seeded_split,
    summary,
)
from training.splits import TextSplits, labels_of, text_split
from training.text_export import export_package
from training.text_model import BACKBONE_KEY, BACKBONE_SHA256_KEY, HEADS_FILE, exit_heads

MAX_TOKENS = 128
PARITY_SAMPLES = 16


def train_heads(features: Tensor, labels: Tensor, num_classes: int, cfg: HeadConfig, what: str) -> nn.ModuleList:
    """One exit head per layer, each on its layer's pooled features ``[N, L, H]``."""
    return fit_heads(
        lambda: exit_heads(num_classes, features.shape[1], features.shape[2]), features.unbind(1), labels, cfg, what
    )


def exit_accuracy(heads: nn.ModuleList, features: Tensor, labels: Tensor) -> list[float]:
    """Accuracy of every exit on pooled features ``[N, L, H]`` (the torch path)."""
    return heads_accuracy(heads, features.unbind(1), labels)


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
    evaluate_and_calibrate(
        out, manifest, evaluation, text_split(splits.calibration, tokenizer, splits.calibration_name), test
    )
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
    print(summary(manifest, started), flush=True)
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
    """Train / calibration / test, seeded (:func:`training.heads.seeded_split`)."""
    fit, calibration, test = seeded_split(len(samples), seed)
    return TextSplits(
        train=[samples[i] for i in fit],
        calibration=[samples[i] for i in calibration],
        test=[samples[i] for i in test],
        calibration_name=CALIBRATION_SPLIT,
        test_name=TEST_SPLIT,
    )


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, help="a local encoder folder (with --data)")
    parser.add_argument("--data", type=Path, help="with --encoder: JSONL or CSV of text and label")
    parser.add_argument("--cnn", metavar="FILE.py:FUNCTION", help="a function returning a CNN's blocks (with --images)")
    parser.add_argument("--images", type=Path, help="with --cnn: a folder with one subfolder of images per class")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="with --cnn: 1 (grey) or 3 (RGB)")
    parser.add_argument("--size", type=image_size, help="with --cnn: the input's HEIGHTxWIDTH (or one number)")
    parser.add_argument("--mean", type=float, default=0.0, help="with --cnn: subtracted from pixels in [0, 1]")
    parser.add_argument("--std", type=float, default=1.0, help="with --cnn: then divided by")
    parser.add_argument("--out", type=Path, required=True, help="the package folder to write, e.g. models/NAME")
    parser.add_argument("--text-key", default="text")
    parser.add_argument("--label-key", default="label")
    parser.add_argument("--epochs", type=int, help=f"default {HeadConfig.epochs}, with --cnn {CNN_HEADS.epochs}")
    parser.add_argument("--seed", type=int, default=HeadConfig.seed)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return parser


def image_size(text: str) -> tuple[int, int]:
    """``28`` or ``32x48`` (height x width) as ``(height, width)``."""
    height, _, width = text.lower().partition("x")
    try:
        size = int(height), int(width or height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH or one number") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the sides must be positive")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    cnn = args.cnn is not None
    if cnn == (args.encoder is not None) or (cnn and (args.images is None or args.channels is None or not args.size)):
        parser.error("give --encoder DIR --data FILE, or --cnn FILE.py:FUNCTION --images DIR --channels C --size S")
    if not cnn and args.data is None:
        parser.error("--encoder needs --data FILE")
    if not args.std > 0:
        parser.error("--std must be positive")
    torch.set_num_threads(args.threads)
    defaults = CNN_HEADS if cnn else HeadConfig()
    cfg = replace(defaults, epochs=args.epochs or defaults.epochs, seed=args.seed)
    try:
        if cnn:
            (height, width) = args.size
            spec = ImageInput(channels=args.channels, height=height, width=width, mean=args.mean, std=args.std)
            package_cnn(args.cnn, args.images, spec, args.out, cfg)
        else:
            classes, samples = read_labelled(args.data, args.text_key, args.label_key)
            package_encoder(args.encoder, seeded_splits(samples, args.seed), classes, args.out, cfg)
    except (DataError, EncoderError, BackboneUnavailable, PackageError, PackagingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
