"""Write a described network as a model package the tiers serve, after checking it end to end.

:func:`write_package` fuses block k with exit k into ``block{k}.onnx``
(``x -> (logits, activation)``, batch axis dynamic, and a text model's token
axis), checks every segment against torch on the example and on the given
data, measures the exits' accuracy through the ONNX chain when the data is
labelled, and writes ``manifest.json``, ``packaging.json`` (MACs and activation
bytes per block, the largest ONNX-torch difference) and ``integrity.json``.
The package is built in a hidden folder beside ``out`` and verified as a tier
verifies it before it replaces ``out``, so a tier polling the folder never sees
half a package.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime as ort
import torch
from tokenizers import Tokenizer
from torch import Tensor
from tqdm import tqdm

from splitexit.packaging.checks import check_inputs, fused, trace_shapes
from splitexit.packaging.description import EarlyExitNetwork, PackagingError, TextPreprocessing
from splitexit.packaging.measure import SegmentCost, segment_costs
from splitexit.packaging.parity import check_parity, exit_accuracy, first_line
from splitexit.packaging.segments import SegmentedModel, export_segment, open_session
from splitexit.shared.integrity import verify_package, write_integrity
from splitexit.shared.manifest import MANIFEST_FILE, BlockSpec, ImageInput, Manifest, TensorSpec, TextInput, sha256_of

REPORT_FILE = "packaging.json"
TOKENIZER_FILE = "tokenizer.json"
TOKEN_AXES = {"x": {1: "tokens"}, "activation": {1: "tokens"}}
FOLDER_MODE = 0o755  # as mkdir makes folders under the usual umask


@dataclass(frozen=True, kw_only=True)
class PackageReport:
    """What ``packaging.json`` records: per block its cost, and how closely ONNX follows torch."""

    blocks: list[SegmentCost]
    parity_max_diff: float
    samples_checked: int
    exit_accuracy: list[float]


def write_package(network: EarlyExitNetwork, out: Path) -> Manifest:
    """Check, export and write ``network`` as a package in ``out`` (replacing one there); its manifest.

    Raises :class:`PackagingError` (one line naming the block or exit) when the
    network does not fit its description or ONNX does not match torch within 1e-4.
    """
    model = fused(network)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.packaging-") as tmp:
        staging = Path(tmp)
        for extra in network.files:
            if not extra.is_file():
                raise PackagingError(f"{network.name}: {extra}, named in files, is not a file")
            shutil.copyfile(extra, staging / extra.name)
        spec, vocab_size = package_input(network, staging)
        check_inputs(network, vocab_size)
        tensors = trace_shapes(network, model)
        blocks, report = export_and_check(network, model, tensors, staging, spec, vocab_size)
        manifest = Manifest(
            name=network.name,
            version=network.version,
            task="text-classification" if isinstance(spec, TextInput) else "image-classification",
            input=spec,
            labels=list(network.labels),
            blocks=blocks,
            default_ranges=network.ranges(),
            exit_accuracy=report.exit_accuracy,
        )
        write_manifest(staging, manifest)
        (staging / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
        write_integrity(staging)
        verify_package(staging)
        replace_folder(staging, out)
    return manifest


def package_input(network: EarlyExitNetwork, staging: Path) -> tuple[ImageInput | TextInput, int | None]:
    """The manifest's input spec and a text model's vocabulary size; its tokenizer is copied into the package."""
    spec = network.preprocessing
    if not isinstance(spec, TextPreprocessing):
        return spec, None
    if not spec.tokenizer.is_file():
        raise PackagingError(f"{network.name}: the tokenizer {spec.tokenizer} is not a file")
    shutil.copyfile(spec.tokenizer, staging / TOKENIZER_FILE)
    try:
        vocab_size = Tokenizer.from_file(str(staging / TOKENIZER_FILE)).get_vocab_size()
    except Exception as exc:
        raise PackagingError(f"{network.name}: {spec.tokenizer} is not a tokenizer.json: {first_line(exc)}") from None
    sha256 = sha256_of(staging / TOKENIZER_FILE)
    return TextInput(tokenizer=TOKENIZER_FILE, tokenizer_sha256=sha256, max_tokens=spec.max_tokens), vocab_size


def export_and_check(
    network: EarlyExitNetwork,
    model: SegmentedModel,
    tensors: list[Tensor],
    staging: Path,
    spec: ImageInput | TextInput,
    vocab_size: int | None,
) -> tuple[list[BlockSpec], PackageReport]:
    """Every segment as ONNX, checked against torch; the manifest's block specs and the report.

    ``tensors`` are block 1's input and every block's output on the example.
    """
    text = isinstance(spec, TextInput)
    sessions = []
    for k, x in enumerate(tqdm(tensors[:-1], desc=f"export {network.name}", unit="block"), start=1):
        path = staging / f"block{k}.onnx"
        try:
            with torch.no_grad(), native_stdout_discarded():
                export_segment(model.segment(k), x, path, TOKEN_AXES if text else None)
            sessions.append(open_session(path))
        except Exception as exc:
            raise PackagingError(
                f"{network.name}: ONNX cannot export block {k} or exit {k}: {first_line(exc)}"
            ) from None
    batches = [network.example, *(network.data.batches() if network.data else [])]
    diff = max(
        check_parity(model, sessions, batch, " on the example input" if i == 0 else f" on data batch {i}")
        for i, batch in enumerate(batches)
    )
    accuracy = measured_accuracy(network, sessions, batches[1:])
    costs = segment_costs(list(model.segments), cost_input(network.example, spec))
    max_length = spec.max_tokens if isinstance(spec, TextInput) else None
    specs = []
    for k, cost in enumerate(costs, start=1):
        x, activation = tensors[k - 1], tensors[k]
        specs.append(
            BlockSpec(
                index=k,
                file=f"block{k}.onnx",
                sha256=sha256_of(staging / f"block{k}.onnx"),
                input=tensor_spec(x, text, max_length, vocab_size if k == 1 else None),
                activation=tensor_spec(activation, text, max_length, None),
                macs=cost.macs,
            )
        )
    samples = sum(len(batch) for batch in batches)
    return specs, PackageReport(blocks=costs, parity_max_diff=diff, samples_checked=samples, exit_accuracy=accuracy)


def measured_accuracy(
    network: EarlyExitNetwork, sessions: list[ort.InferenceSession], batches: list[Tensor]
) -> list[float]:
    """Each exit's accuracy on the labelled data through ONNX; empty without labels."""
    labels = network.data.label_array() if network.data else None
    if labels is None:
        return []
    samples = sum(len(batch) for batch in batches)
    if len(labels) != samples:
        raise PackagingError(f"{network.name}: the data has {samples} samples but {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= len(network.labels):
        raise PackagingError(f"{network.name}: data labels must lie in 0..{len(network.labels) - 1}")
    return exit_accuracy(sessions, [batch.numpy() for batch in batches], labels)


def cost_input(example: Tensor, spec: ImageInput | TextInput) -> Tensor:
    """One sample of the example, a text's ids repeated out to the token limit (costs are quoted at the limit)."""
    one = example[:1]
    if isinstance(spec, TextInput):
        repeats = -(-spec.max_tokens // one.shape[1])
        one = one.repeat(1, repeats)[:, : spec.max_tokens]
    return one


def tensor_spec(x: Tensor, text: bool, max_length: int | None, vocab_size: int | None) -> TensorSpec:
    """A segment input or output as the manifest records it: the batch axis (and a text's token axis) dynamic."""
    fixed = list(x.shape[2:] if text else x.shape[1:])
    shape: list[int | None] = [None, None, *fixed] if text else [None, *fixed]
    dtype = "int64" if x.dtype == torch.int64 else "float32"
    return TensorSpec(dtype=dtype, shape=shape, max_length=max_length, vocab_size=vocab_size)


@contextmanager
def native_stdout_discarded() -> Iterator[None]:
    """Send what C++ code prints to file descriptor 1 nowhere (the exporter dumps its whole graph on failure)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def write_manifest(package_dir: Path, manifest: Manifest) -> None:
    """``manifest.json``, as every package ships it (indented, trailing newline, so diffs stay readable)."""
    (package_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")


def replace_folder(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out``; an existing ``out`` is moved aside first and removed after.

    ``out`` gets ``FOLDER_MODE``: a temporary folder is its owner's alone, a package is read by the tiers'
    users too.
    """
    staging.chmod(FOLDER_MODE)
    if out.exists():
        old = out.parent / f".{out.name}.replaced-{staging.name}"
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)
    staging.mkdir()  # the TemporaryDirectory context removes it again
