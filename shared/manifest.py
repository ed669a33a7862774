"""The model package: a manifest plus one ONNX segment per block.

A package is a folder::

    models/fmnist-cnn/
        manifest.json      # this schema
        block1.onnx ...    # block k + its exit head: x -> (logits, activation)

Every segment has one input ``x`` (the previous block's activation, or the
preprocessed input for block 1) and two outputs: ``logits`` from the block's
exit head and ``activation`` to hand to block k+1. Blocks are numbered from 1,
so "exit k" is the head after block k and the final exit is ``len(blocks)``.

Two families share this layout. An image model (``task="image-classification"``,
:class:`ImageInput`) takes a float image tensor ``[1, C, H, W]``; a text model
(``task="text-classification"``, :class:`TextInput`) takes int64 token ids
``[1, tokens]`` and passes hidden states ``[1, tokens, hidden]`` between blocks,
with the tokenizer file shipped in the package.

Manifests are parsed strictly: a key no model here declares (a misspelling such
as ``vocab_rize``) is a :class:`ManifestError` naming the key and the file. How
``integrity.json`` covers the manifest and every other file is
``shared/integrity.py``'s subject.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from splitexit.shared.tiers import Tier

MANIFEST_FILE = "manifest.json"


class ManifestModel(BaseModel):
    """Every part of a manifest: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BlockRange(ManifestModel):
    """An inclusive range of block numbers, ``first..last``."""

    first: int = Field(ge=1)
    last: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> BlockRange:
        if self.last < self.first:
            raise ValueError(f"block range {self.first}..{self.last} is empty")
        return self

    def __contains__(self, block: int) -> bool:
        return self.first <= block <= self.last

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


class TensorSpec(ManifestModel):
    """Shape and dtype of one segment input/output; ``None`` marks a dynamic axis.

    The leading axis is the batch. Other dynamic axes (a text model's token
    positions) hold from 1 to ``max_length`` values; ``vocab_size`` bounds the
    values of an int64 tensor of token ids.
    """

    dtype: Literal["float32", "int64"] = "float32"
    shape: list[int | None]
    max_length: int | None = Field(None, ge=1, description="the most values a dynamic non-batch axis may hold")
    vocab_size: int | None = Field(None, ge=1, description="int64 ids only: every value lies in [0, vocab_size)")

    def per_sample_shape(self) -> tuple[int | None, ...]:
        """The shape without the leading batch axis (``None`` where the axis is dynamic)."""
        return tuple(self.shape[1:])


class ImageInput(ManifestModel):
    """How raw image bytes become the tensor that block 1 takes."""

    kind: Literal["image"] = "image"
    channels: Literal[1, 3]
    height: int
    width: int
    mean: float
    std: float


class TextInput(ManifestModel):
    """How UTF-8 text becomes the token ids that block 1 takes.

    ``tokenizer`` names a Hugging Face ``tokenizer.json`` inside the package
    (normalisation, e.g. lowercasing, and the special tokens live in it). Ids
    are ``[CLS] tokens... [SEP]``; a text longer than ``max_tokens`` ids
    (special tokens included) is refused, or cut to that length on request.
    """

    kind: Literal["text"] = "text"
    tokenizer: str = "tokenizer.json"
    tokenizer_sha256: str
    max_tokens: int = Field(ge=3, le=512, description="ids per sample, [CLS] and [SEP] included")


class BlockSpec(ManifestModel):
    """One ONNX segment: a block and the exit head after it."""

    index: int = Field(ge=1)
    file: str
    sha256: str
    input: TensorSpec
    activation: TensorSpec
    macs: int = Field(ge=0, description="multiply-accumulates per sample, block + exit head")
    temperature: float | None = Field(
        None, gt=0, description="the exit's softmax temperature, fitted on a calibration split; None: 1 (uncalibrated)"
    )


class Manifest(ManifestModel):
    """Everything a tier needs to serve a model, and nothing that needs torch."""

    name: str
    version: str
    task: Literal["image-classification", "text-classification"]
    input: ImageInput | TextInput = Field(discriminator="kind")
    labels: list[str]
    blocks: list[BlockSpec]
    default_ranges: dict[Tier, BlockRange]
    exit_accuracy: list[float] = Field(
        default_factory=list, description="test accuracy of each exit, measured at export"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        expected_task = {"image": "image-classification", "text": "text-classification"}[self.input.kind]
        if self.task != expected_task:
            raise ValueError(f"a {self.task} model cannot take {self.input.kind} input")
        numbers = [b.index for b in self.blocks]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"blocks must be numbered 1..N in order, got {numbers}")
        for tier, hosted in self.default_ranges.items():
            if hosted.last > len(self.blocks):
                raise ValueError(f"{tier.value} range {hosted} exceeds {len(self.blocks)} blocks")
        return self

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def block(self, index: int) -> BlockSpec:
        return self.blocks[index - 1]

    def files_read(self) -> list[str]:
        """The package's files a tier reads besides the manifest: every segment, and a text model's tokenizer."""
        tokenizer = [self.input.tokenizer] if isinstance(self.input, TextInput) else []
        return [*(block.file for block in self.blocks), *tokenizer]


class PackageError(RuntimeError):
    """A model package that no tier may serve; the message names the file and what is wrong."""


class ChecksumError(PackageError):
    """A package file does not match the checksum its manifest or ``integrity.json`` records."""


class ManifestError(PackageError):
    """A ``manifest.json`` that does not parse, or has a key the schema does not know."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(package_dir: Path) -> Manifest:
    """Read ``package_dir/manifest.json``; :class:`ManifestError` names the file and every bad key."""
    path = package_dir / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ManifestError(f"{path}: {validation_summary(exc)}") from None


def validation_summary(exc: ValidationError) -> str:
    """A pydantic error on one line: ``unknown key 'blocks.0.vocab_rize'``, or ``key: what is wrong``."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {where!r} (misspelled?)")
        else:
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(problems)


def verified_segment_path(package_dir: Path, block: BlockSpec) -> Path:
    """The path of a block's ONNX file, after checking it against the manifest."""
    return verified(
        package_dir / block.file, block.sha256, "rebuild the package with `make train` or restore the file from git"
    )


def verified(path: Path, sha256: str, remedy: str) -> Path:
    """``path``, if its sha256 is the one the manifest names; else :class:`ChecksumError` saying ``remedy``."""
    actual = sha256_of(path)
    if actual != sha256:
        raise ChecksumError(f"{path} has sha256 {actual[:12]}…, the manifest expects {sha256[:12]}…; {remedy}")
    return path
