"""Export a trained EarlyExitCNN as a model package, through the public packager (``splitexit.packaging``).

    python -m training.export --package models/fmnist-cnn

Reads ``state_dict.pt`` from the package folder and hands the CNN's blocks and exit
heads, with the Fashion-MNIST test set, to :func:`~splitexit.packaging.write_package`:
it writes ``block{k}.onnx`` for every block, checks each segment against torch on
the test images, measures every exit's accuracy through the ONNX chain, and writes
the manifest and ``integrity.json`` (``state_dict.pt`` ships along). It fails with
a :class:`~splitexit.packaging.ParityError` if ONNX and torch disagree.

The text export (``training.text_export``) reuses this module's exporter pieces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lab.fashion_mnist import LABELS
from splitexit.packaging import CheckData, EarlyExitNetwork, write_package
from splitexit.packaging.parity import check_parity, onnx_exits
from splitexit.packaging.segments import export_segment, open_session
from splitexit.packaging.writer import write_manifest
from splitexit.shared.manifest import MANIFEST_FILE, BlockRange, ImageInput, Manifest
from splitexit.shared.tiers import Tier
from training.cnn import STATE_DICT_FILE, load_reference
from training.data import image_input, load_tensors

__all__ = [
    "DEFAULT_RANGES",
    "check_parity",
    "export_package",
    "export_segment",
    "onnx_exits",
    "open_session",
    "write_manifest",
]

NAME = "fmnist-cnn"
VERSION = "1"
DEFAULT_RANGES = {
    Tier.DEVICE: BlockRange(first=1, last=2),
    Tier.EDGE: BlockRange(first=1, last=4),
    Tier.CLOUD: BlockRange(first=1, last=6),
}


def export_package(package_dir: Path, spec: ImageInput, eval_limit: int | None = None) -> Manifest:
    """Package ``package_dir/state_dict.pt``, checked and measured on the first ``eval_limit`` test images."""
    model = load_reference(package_dir)
    test_x, test_y = load_tensors("test", spec, eval_limit)
    network = EarlyExitNetwork(
        name=NAME,
        version=VERSION,
        blocks=[segment.body for segment in model.segments],
        exits=[segment.head for segment in model.segments],
        example=test_x[:1],
        labels=list(LABELS),
        preprocessing=spec,
        data=CheckData(test_x, test_y),
        default_ranges=DEFAULT_RANGES,
        files=[package_dir / STATE_DICT_FILE],
    )
    return write_package(network, package_dir)


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
