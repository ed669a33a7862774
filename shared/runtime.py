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
from splitexit.policies.plan import exits_at, softmax_rows
from splitexit.shared.errors import OutOfRange, UnknownModel
from splitexit.shared.integrity import load_public_key, verify_package
from splitexit.shared.manifest import BlockSpec, Manifest, verified_segment_path
from splitexit.shared.settings import HostedRanges
from splitexit.shared.tiers import Tier


def exit_probabilities(logits: np.ndarray, block: BlockSpec) -> np.ndarray:
    """Class probabilities of a batch of a block's exit logits: softmax at the exit's calibrated temperature.

    Every confidence C_k the tiers compare with α_k, and every replay of them, comes from here.
    """
    scaled = logits.astype(np.float64)
    return softmax_rows(scaled / block.temperature if block.temperature is not None else scaled)


@dataclass
class LocalRun:
    """What one tier did with one sample."""

    first_block: int
    last_block: int = 0
    exited: bool = False
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))  # exit_probabilities of ``logits``
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

    def run(
        self, start_block: int, x: np.ndarray, thresholds: Sequence[Sequence[float]], stop_blocks: Sequence[int]
    ) -> list[LocalRun]:
        """Run a batch of samples from ``start_block``, each until its exit or its own stop block.

        ``x`` stacks the samples on axis 0; sample ``i`` exits after block k if
        C_k > ``thresholds[i][k - 1]`` (or k is the final block) and runs no
        further than ``stop_blocks[i]`` (then it must travel on with its
        activation). Each block runs once for every sample still going, so a
        batch costs one session call per block; a stop block before
        ``start_block`` runs nothing: the sample is relayed as it came.
        """
        runs = [LocalRun(first_block=start_block, last_block=start_block - 1) for _ in range(len(x))]
        going = list(range(len(x)))  # samples still running, in the order of the rows of ``x``
        started = time.perf_counter()
        block = start_block
        while going:
            staying = [row for row, i in enumerate(going) if stop_blocks[i] < block]
            for row in staying:
                runs[going[row]].activation = x[row : row + 1]
            if staying:
                keep = [row for row, i in enumerate(going) if stop_blocks[i] >= block]
                x, going = x[keep], [going[row] for row in keep]
                if not going:
                    break
            logits, x = self.run_block(block, x)
            probabilities = exit_probabilities(logits, self.manifest.block(block))
            confidences = probabilities.max(axis=1)
            keep = []
            for row, i in enumerate(going):
                run = runs[i]
                run.last_block = block
                run.exit_confidences.append(float(confidences[row]))
                run.logits, run.probabilities = logits[row], probabilities[row]
                if exits_at(block, run.exit_confidences[-1], thresholds[i], self.manifest.num_blocks):
                    run.exited = True
                    run.activation = x[row : row + 1]
                else:
                    keep.append(row)
            if len(keep) < len(going):
                x, going = x[keep], [going[row] for row in keep]
            block += 1
        compute_s = time.perf_counter() - started
        for run in runs:
            run.compute_s = compute_s
        return runs


class ModelRegistry:
    """Every model package in a folder, each loaded with the range this tier hosts."""

    def __init__(self, models: dict[str, HostedModel]) -> None:
        if not models:
            raise ValueError("no model packages found")
        self._models = models

    @classmethod
    def load(
        cls, models_dir: Path, tier: Tier, hosted: HostedRanges, onnx_threads: int = 1, public_key: Path | None = None
    ) -> ModelRegistry:
        """Every package under ``models_dir``, with the chain ``hosted`` describes (manifest defaults elsewhere).

        Each package is verified first (``shared/integrity.py``), its signature too when ``public_key``
        names an ed25519 public key; one that fails raises :class:`PackageError` naming the file.
        """
        key = load_public_key(public_key) if public_key else None
        models = {}
        for manifest_path in sorted(models_dir.glob("*/manifest.json")):
            manifest = verify_package(manifest_path.parent, key)
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
