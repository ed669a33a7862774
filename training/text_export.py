"""Text model packages: ONNX slices from the pip-installed backbone plus the committed heads.

    python -m training.text_export                         # make models: rebuild what is missing, verify all
    python -m training.text_export --models-dir models-large   # make models-large: the all-mpnet-base-v2 ones
    python -m training.text_export --models-dir models-large --timed   # make bench: how long a full export takes

A text package in git holds ``manifest.json``, ``heads.safetensors`` (the exit
heads, ~1-3 MB, naming their backbone) and ``tokenizer.json``; its
``block{k}.onnx`` slices (~90 MB for all-MiniLM-L6-v2, ~440 MB for
all-mpnet-base-v2, mostly block 1's embeddings) are not committed. This module
writes them from the installed backbone (:mod:`training.backbones`) and the
heads, deterministically, so a rebuild has exactly the bytes whose sha256 the
manifest records; a slice that does not match is an error, never silently served.

:func:`export_package` is what training calls: it also checks ONNX against
torch on real sentences and measures every exit's accuracy through the ONNX
chain, then writes the manifest.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from splitexit.shared.integrity import verify_package
from splitexit.shared.manifest import (
    BlockRange,
    BlockSpec,
    ChecksumError,
    Manifest,
    TensorSpec,
    TextInput,
    load_manifest,
    sha256_of,
)
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tiers import Tier
from training.encoders import Encoder, load_encoder
from training.export import check_parity, export_segment, onnx_exits, open_session, write_manifest
from training.text_model import (
    BACKBONE_KEY,
    BACKBONE_SHA256_KEY,
    HEAD_WIDTH,
    EarlyExitEncoder,
    heads_metadata,
    load_reference,
    package_backbone_dir,
)
from training.text_slices import missing_or_stale, text_packages

VERSION = "1"
TRACE_TOKENS = 7  # the example length the segments are traced with; the token axis stays dynamic


def default_ranges(num_blocks: int) -> dict[Tier, BlockRange]:
    """Device the first third of the blocks, edge the first two thirds, cloud all (6 blocks: 1..2, 1..4, 1..6)."""
    reach = {Tier.DEVICE: max(1, num_blocks // 3), Tier.EDGE: max(1, 2 * num_blocks // 3), Tier.CLOUD: num_blocks}
    return {tier: BlockRange(first=1, last=last) for tier, last in reach.items()}


def block_macs(encoder: Encoder, tokens: int, num_classes: int) -> int:
    """Multiply-accumulates of one layer + its exit head for one sample of ``tokens`` ids.

    Q, K, V and output projections (4·H²), the feed-forward pair (2·H·F) per token,
    attention scores and mixing (2·T·H) per token, then the head's MLP once.
    """
    hidden = encoder.hidden
    per_token = 4 * hidden * hidden + 2 * hidden * encoder.ffn_width + 2 * tokens * hidden
    return tokens * per_token + hidden * HEAD_WIDTH + HEAD_WIDTH * num_classes


def write_segments(model: EarlyExitEncoder, encoder: Encoder, package_dir: Path, spec: TextInput) -> list[BlockSpec]:
    """``block{k}.onnx`` for every block, token and batch axes dynamic; their specs with checksums."""
    hidden = TensorSpec(shape=[None, None, encoder.hidden], max_length=spec.max_tokens)
    ids = TensorSpec(dtype="int64", shape=[None, None], max_length=spec.max_tokens, vocab_size=encoder.vocab_size)
    num_classes = model.segment(1).head.classifier[-1].out_features
    blocks = []
    example: torch.Tensor = torch.arange(1000, 1000 + TRACE_TOKENS).unsqueeze(0)
    with torch.no_grad():
        for k in tqdm(range(1, model.num_blocks + 1), desc="export ONNX", unit="block"):
            path = package_dir / f"block{k}.onnx"
            token_axes = {"x": {1: "tokens"}, "activation": {1: "tokens"}}
            export_segment(model.segment(k), example, path, token_axes)
            blocks.append(
                BlockSpec(
                    index=k,
                    file=path.name,
                    sha256=sha256_of(path),
                    input=ids if k == 1 else hidden,
                    activation=hidden,
                    macs=block_macs(encoder, spec.max_tokens, num_classes),
                )
            )
            example = model.segment(k)(example)[1]
    return blocks


def check_backbone(package_dir: Path, encoder: Encoder) -> None:
    """Raise unless ``encoder`` is the one the package's heads were trained on."""
    expected = heads_metadata(package_dir).get(BACKBONE_SHA256_KEY)
    if expected != encoder.weights_sha256:
        raise ChecksumError(
            f"{package_dir.name}'s heads were trained on a backbone with sha256 {str(expected)[:12]}…, but "
            f"{encoder.folder} has {encoder.weights_sha256[:12]}…; install the pinned requirements/*.txt"
        )


def export_package(
    package_dir: Path,
    name: str,
    labels: Sequence[str],
    spec: TextInput,
    eval_ids: Sequence[np.ndarray],
    eval_labels: np.ndarray,
    parity_ids: Sequence[np.ndarray],
    encoder: Encoder,
) -> Manifest:
    """Write the slices, check them against torch, measure exit accuracy through ONNX, write the manifest.

    ``package_dir`` already holds the heads and the tokenizer; ``*_ids`` are int64
    ``[1, T]`` samples, tokenized as serving tokenizes them.
    """
    check_backbone(package_dir, encoder)
    model = load_reference(package_dir, len(labels), encoder)
    blocks = write_segments(model, encoder, package_dir, spec)
    sessions = [open_session(package_dir / block.file) for block in blocks]
    for ids in parity_ids:
        check_parity(model, sessions, torch.from_numpy(ids))
    per_sample = [onnx_exits(sessions, ids) for ids in tqdm(eval_ids, desc="exit accuracy (ONNX)", unit="text")]
    predictions = np.array([[int(logits.argmax()) for logits in exits] for exits in per_sample])
    accuracy = [round(float(a), 4) for a in (predictions == eval_labels[:, None]).mean(axis=0)]
    manifest = Manifest(
        name=name,
        version=VERSION,
        task="text-classification",
        input=spec,
        labels=list(labels),
        blocks=blocks,
        default_ranges=default_ranges(len(blocks)),
        exit_accuracy=accuracy,
    )
    write_manifest(package_dir, manifest)
    return manifest


def export_slices(
    package_dir: Path, manifest: Manifest, into: Path, encoder_dir: Path | None = None
) -> list[BlockSpec]:
    """Every slice of a text package written into ``into`` from its backbone and heads; their specs.

    The backbone is the installed one the heads name, or the folder ``encoder_dir``.
    """
    assert isinstance(manifest.input, TextInput)
    encoder = load_encoder(encoder_dir or package_backbone_dir(package_dir))
    check_backbone(package_dir, encoder)
    model = load_reference(package_dir, len(manifest.labels), encoder)
    return write_segments(model, encoder, into, manifest.input)


def mismatched(manifest: Manifest, rebuilt: Sequence[BlockSpec], files: Sequence[str]) -> None:
    """Raise :class:`ChecksumError` for the first of ``files`` whose rebuilt checksum is not the manifest's."""
    built = {block.file: block.sha256 for block in rebuilt}
    for block in manifest.blocks:
        if block.file in files and built[block.file] != block.sha256:
            raise ChecksumError(
                f"rebuilt {block.file} has sha256 {built[block.file][:12]}…, the manifest of {manifest.name} "
                f"expects {block.sha256[:12]}…: torch/onnx differ from requirements/dev.txt's pins"
            )


def rebuild(package_dir: Path, encoder_dir: Path | None = None) -> list[str]:
    """Write the slices a text package lacks, from the backbone and its heads; returns their names.

    The export runs in a temporary folder and a slice replaces the package's only if
    its checksum is the manifest's, so a failed or mismatched rebuild changes nothing.
    """
    manifest = load_manifest(package_dir)
    stale = missing_or_stale(package_dir, manifest)
    if not stale:
        return []
    with tempfile.TemporaryDirectory(dir=package_dir, prefix=".rebuild-") as tmp:
        mismatched(manifest, export_slices(package_dir, manifest, Path(tmp), encoder_dir), stale)
        for name in stale:
            (Path(tmp) / name).replace(package_dir / name)
    return stale


def timed_export(package_dir: Path) -> dict[str, object]:
    """How long exporting all of a text package's slices takes (what ``make models`` does when all are missing:
    load the backbone and heads, export, checksum), into a temporary folder, each slice checked against the
    manifest; the package itself is not touched."""
    manifest = load_manifest(package_dir)
    with tempfile.TemporaryDirectory(prefix=f"{package_dir.name}-export-") as tmp:
        started = time.perf_counter()
        rebuilt = export_slices(package_dir, manifest, Path(tmp))
        seconds = time.perf_counter() - started
        size = sum((Path(tmp) / block.file).stat().st_size for block in rebuilt)
    mismatched(manifest, rebuilt, [block.file for block in manifest.blocks])
    return {
        "backbone": heads_metadata(package_dir).get(BACKBONE_KEY),
        "slices": len(rebuilt),
        "megabytes": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--timed", action="store_true", help="only time a full export into a temporary folder; print it as JSON"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.timed:
        print(json.dumps({package.name: timed_export(package) for package in text_packages(args.models_dir)}))
        return
    for package in text_packages(args.models_dir):
        written = rebuild(package)
        verify_package(package)
        state = f"rebuilt {', '.join(written)}" if written else "up to date"
        print(f"{package.name}: {state} (checksums match manifest.json and integrity.json)")


if __name__ == "__main__":
    main()
