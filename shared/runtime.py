"""The models a tier hosts, as onnxruntime sessions, and the block-by-block loop.

A tier loads only the segments of its hosted range. :meth:`HostedModel.run`
resumes a sample at any hosted block and runs block after block, checking the
threshold at every exit, until a confident exit, the final block, or the
plan's stop point (the sample must then travel on). The loop is plain
synchronous code: servers run it on a worker thread, off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.errors import OutOfRange, UnknownModel
from shared.manifest import BlockRange, Manifest, Tier, load_manifest, verified_segment_path
from shared.policy import exits_at, top_probability


@dataclass
class LocalRun:
    """What one tier did with one sample."""

    first_block: int
    last_block: int = 0
    exited: bool = False
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    activation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    exit_confidences: list[float] = field(default_factory=list)
    compute_s: float = 0.0

    @property
    def blocks_run(self) -> int:
        return self.last_block - self.first_block + 1


class HostedModel:
    """One model's hosted segments on one tier."""

    def __init__(self, package_dir: Path, manifest: Manifest, hosted: BlockRange, onnx_threads: int) -> None:
        if hosted.last > manifest.num_blocks:
            raise ValueError(f"{manifest.name} has {manifest.num_blocks} blocks; cannot host {hosted}")
        self.package_dir = package_dir
        self.manifest = manifest
        self.hosted = hosted
        options = ort.SessionOptions()
        options.intra_op_num_threads = onnx_threads
        options.inter_op_num_threads = 1
        self._sessions = {
            k: ort.InferenceSession(
                str(verified_segment_path(package_dir, manifest.block(k))),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            for k in range(hosted.first, hosted.last + 1)
        }

    @property
    def name(self) -> str:
        return self.manifest.name

    def check_resumable(self, tier: Tier, block: int) -> None:
        """Raise :class:`OutOfRange` unless this tier can resume a sample at ``block``."""
        if block not in self.hosted:
            raise OutOfRange(
                f"the {tier.value} hosts blocks {self.hosted} of {self.name}; it cannot resume at block {block}"
            )

    def run_block(self, block: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One segment: ``x`` -> (exit logits, activation for the next block)."""
        logits, activation = self._sessions[block].run(["logits", "activation"], {"x": x})
        return logits, activation

    def run(self, start_block: int, x: np.ndarray, thresholds: Sequence[float], stop_block: int) -> LocalRun:
        """Run blocks from ``start_block`` until an exit (C_k > α_k, or the final block) or ``stop_block``.

        A ``stop_block`` before ``start_block`` runs nothing: the tier relays ``x`` as it came.
        """
        result = LocalRun(first_block=start_block, last_block=start_block - 1, activation=x)
        started = time.perf_counter()
        for block in range(start_block, stop_block + 1):
            logits, x = self.run_block(block, x)
            confidence = top_probability(logits[0])
            result.last_block = block
            result.exit_confidences.append(confidence)
            result.logits = logits[0]
            if exits_at(block, confidence, thresholds, self.manifest.num_blocks):
                result.exited = True
                break
        result.activation = x
        result.compute_s = time.perf_counter() - started
        return result


class ModelRegistry:
    """Every model package in a folder, each loaded with the range this tier hosts."""

    def __init__(self, models: dict[str, HostedModel]) -> None:
        if not models:
            raise ValueError("no model packages found")
        self._models = models

    @classmethod
    def load(
        cls, models_dir: Path, tier: Tier, hosted: dict[str, BlockRange], onnx_threads: int = 1
    ) -> ModelRegistry:
        models = {}
        for manifest_path in sorted(models_dir.glob("*/manifest.json")):
            manifest = load_manifest(manifest_path.parent)
            blocks = hosted.get(manifest.name, manifest.default_ranges[tier])
            models[manifest.name] = HostedModel(manifest_path.parent, manifest, blocks, onnx_threads)
        unknown = set(hosted) - set(models)
        if unknown:
            raise ValueError(f"hosted ranges name models not in {models_dir}: {sorted(unknown)}")
        return cls(models)

    def get(self, name: str) -> HostedModel:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModel(
                f"no model named {name!r}; this tier serves {', '.join(sorted(self._models))}"
            ) from None

    def __iter__(self):
        return iter(self._models.values())
