"""Export a trained EarlyExitCNN as a model package: ONNX segments and ``manifest.json``.

    python -m training.export --package models/fmnist-cnn

Reads ``state_dict.pt`` from the package folder, writes ``block{k}.onnx`` for every
block (block + exit head, ``x -> (logits, activation)``), checks each segment against
torch on real test images, measures every exit's accuracy on the test set through the
ONNX chain, and writes the manifest and ``integrity.json``. Fails with :class:`ParityError` if ONNX and torch
disagree.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from lab.fashion_mnist import LABELS
from splitexit.shared.integrity import write_integrity
from splitexit.shared.manifest import MANIFEST_FILE, BlockRange, BlockSpec, ImageInput, Manifest, TensorSpec, sha256_of
from splitexit.shared.tiers import Tier
from training.cnn import load_reference
from training.data import image_input, load_tensors
from training.segments import Segment

NAME = "fmnist-cnn"
VERSION = "1"
OPSET = 17
PARITY_TOLERANCE = 1e-4
PARITY_SAMPLES = 256
EVAL_BATCH = 1000
DEFAULT_RANGES = {
    Tier.DEVICE: BlockRange(first=1, last=2),
    Tier.EDGE: BlockRange(first=1, last=4),
    Tier.CLOUD: BlockRange(first=1, last=6),
}


class SegmentedModel(Protocol):
    """A torch model cut into blocks, each ``x -> (logits, activation)`` (the CNN, the text model)."""

    def segment(self, k: int) -> Segment: ...


class ParityError(RuntimeError):
    """An ONNX segment's outputs differ from torch's by more than ``PARITY_TOLERANCE``."""


def export_segment(
    segment: Segment, example: Tensor, path: Path, dynamic_axes: dict[str, dict[int, str]] | None = None
) -> None:
    """Write one segment (``x -> (logits, activation)``) with the legacy exporter, traced on ``example``.

    The batch axis of every input and output is dynamic; ``dynamic_axes`` may name more
    (a text model's token axis).
    """
    axes = {name: {0: "batch"} for name in ("x", "logits", "activation")}
    for name, extra in (dynamic_axes or {}).items():
        axes[name] = {**axes[name], **extra}
    torch.onnx.export(
        segment,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["x"],
        output_names=["logits", "activation"],
        dynamic_axes=axes,
    )


def open_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(model: SegmentedModel, sessions: list[ort.InferenceSession], x: Tensor) -> None:
    """Run every segment on its real input in torch and ONNX; raise if any output differs."""
    with torch.no_grad():
        for k, session in enumerate(sessions, start=1):
            expected = [t.numpy() for t in model.segment(k)(x)]
            actual = session.run(["logits", "activation"], {"x": x.numpy()})
            for name, want, got in zip(("logits", "activation"), expected, actual, strict=True):
                diff = float(np.abs(want - got).max())
                if diff > PARITY_TOLERANCE:
                    raise ParityError(f"block{k}.onnx {name} differs from torch by {diff:.2e} > {PARITY_TOLERANCE}")
            x = torch.from_numpy(expected[1])


def onnx_exits(sessions: list[ort.InferenceSession], x: np.ndarray) -> list[np.ndarray]:
    """Logits at every exit from chaining the ONNX segments, in batches of ``EVAL_BATCH``."""
    exits: list[list[np.ndarray]] = [[] for _ in sessions]
    for start in range(0, len(x), EVAL_BATCH):
        activation = x[start : start + EVAL_BATCH]
        for k, session in enumerate(sessions):
            logits, activation = session.run(["logits", "activation"], {"x": activation})
            exits[k].append(logits)
    return [np.concatenate(chunks) for chunks in exits]


def export_package(package_dir: Path, spec: ImageInput, eval_limit: int | None = None) -> Manifest:
    """Export ``package_dir/state_dict.pt`` to ONNX, verify it and write the manifest."""
    model = load_reference(package_dir)
    test_x, test_y = load_tensors("test", spec, eval_limit)
    blocks = []
    for k, ((in_shape, out_shape), macs) in enumerate(zip(model.block_shapes(), model.macs_per_block()), start=1):
        path = package_dir / f"block{k}.onnx"
        export_segment(model.segment(k), torch.zeros(1, *in_shape), path)
        blocks.append(
            BlockSpec(
                index=k,
                file=path.name,
                sha256=sha256_of(path),
                input=TensorSpec(shape=[None, *in_shape]),
                activation=TensorSpec(shape=[None, *out_shape]),
                macs=macs,
            )
        )
    sessions = [open_session(package_dir / block.file) for block in blocks]
    check_parity(model, sessions, test_x[:PARITY_SAMPLES])
    labels = test_y.numpy()
    accuracy = [round(float((logits.argmax(1) == labels).mean()), 4) for logits in onnx_exits(sessions, test_x.numpy())]
    manifest = Manifest(
        name=NAME,
        version=VERSION,
        task="image-classification",
        input=spec,
        labels=list(LABELS),
        blocks=blocks,
        default_ranges=DEFAULT_RANGES,
        exit_accuracy=accuracy,
    )
    write_manifest(package_dir, manifest)
    write_integrity(package_dir)
    return manifest


def write_manifest(package_dir: Path, manifest: Manifest) -> None:
    """``manifest.json``, as every package ships it (indented, trailing newline, so diffs stay readable)."""
    (package_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, default=Path("models/fmnist-cnn"))
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = export_package(args.package, image_input())
    print(f"wrote {args.package / MANIFEST_FILE}; exit accuracy {manifest.exit_accuracy}")


if __name__ == "__main__":
    main()
