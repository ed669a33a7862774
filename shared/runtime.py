"""The models a tier hosts, as onnxruntime sessions, and the block-by-block loop.

A tier loads only the segments of its hosted range. :meth:`HostedModel.run`
resumes a sample at any hosted block and runs block after block, checking the
threshold at every exit, until a confident exit, the final block, or the
plan's stop point (the sample must then travel on). The loop is plain
synchronous code: servers run it on a worker thread, off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from splitexit.policies.chain import Chain
from splitexit.policies.plan import exits_at, softmax
from splitexit.shared.errors import OutOfRange, UnknownModel
from splitexit.shared.manifest import Manifest, load_manifest, verified_segment_path
from splitexit.shared.settings import HostedRanges
from splitexit.shared.tiers import Tier


@dataclass
class LocalRun:
    """What one tier did with one sample."""

    first_block: int
    last_block: int = 0
    exited: bool = False
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))  # softmax of ``logits``, float64
    activation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    exit_confidences: list[float] = field(default_factory=list)
    compute_s: float = 0.0

    @property
    def blocks_run(self) -> int:
        return self.last_block - self.first_block + 1


class HostedModel:
    """One model's hosted segments on one tier, and the chain of tiers it is part of."""

    def __init__(self, package_dir: Path, manifest: Manifest, chain: Chain, tier: Tier, onnx_threads: int) -> None:
        self.package_dir = package_dir
        self.manifest = manifest
        self.chain = chain
        self.tier = tier
        self.hosted = chain.hosted[tier]
        options = ort.SessionOptions()
        options.intra_op_num_threads = onnx_threads
        options.inter_op_num_threads = 1
        self._sessions = {
            k: ort.InferenceSession(
                str(verified_segment_path(package_dir, manifest.block(k))),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            for k in range(self.hosted.first, self.hosted.last + 1)
        }

    @property
    def name(self) -> str:
        return self.manifest.name

    def check_resumable(self, block: int) -> None:
        """Raise :class:`OutOfRange` unless this tier can resume a sample at ``block``."""
        if block not in self.hosted:
            raise OutOfRange(
                f"the {self.tier.value} hosts blocks {self.hosted} of {self.name}; it cannot resume at block {block}"
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
            probabilities = softmax(logits[0])
            confidence = float(probabilities.max())
            result.last_block = block
            result.exit_confidences.append(confidence)
            result.logits, result.probabilities = logits[0], probabilities
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
    def load(cls, models_dir: Path, tier: Tier, hosted: HostedRanges, onnx_threads: int = 1) -> ModelRegistry:
        """Every package under ``models_dir``, with the chain ``hosted`` describes (manifest defaults elsewhere)."""
        models = {}
        for manifest_path in sorted(models_dir.glob("*/manifest.json")):
            manifest = load_manifest(manifest_path.parent)
            chain = Chain.of(manifest, hosted.get(manifest.name))
            models[manifest.name] = HostedModel(manifest_path.parent, manifest, chain, tier, onnx_threads)
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

    def __iter__(self) -> Iterator[HostedModel]:
        return iter(self._models.values())
