"""What each activation codec costs in accuracy and saves in bytes, on the full test sets.

Every test sample runs through all blocks of its model with the tiers' default
split; at each link (device → edge, edge → cloud) its activation goes through
:func:`~splitexit.shared.tensors.encode` and :func:`~splitexit.shared.tensors.decode`
with the codec under test, exactly as on the wire. Reported per model and codec:
bytes per sample on each link, accuracy at the final exit, and the largest
accuracy change at any exit behind a link (where a sample may stop), against fp32.
Texts are grouped by token length so equal lengths run as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.bare import BareChain
from lab.scenarios import LOADERS, SCENARIOS
from splitexit.policies.chain import Chain
from splitexit.shared.manifest import load_manifest
from splitexit.shared.tensors import CODECS, Codec, decode, encode
from splitexit.shared.tiers import Tier

TEST_SETS = ("fmnist-clean", "sentiment-imdb", "bbc-topic")  # the clean test stream of each model
BATCH = 256


@dataclass
class Outcome:
    """Predictions at every exit [N, L], and bytes per sample on each link."""

    predictions: np.ndarray
    link_bytes: np.ndarray

    def cross(self, x: np.ndarray, link: int, codec: Codec) -> np.ndarray:
        """A batch's activations after the wire: each sample encoded and decoded alone, its bytes counted."""
        wire = [encode(x[i : i + 1], codec) for i in range(len(x))]
        self.link_bytes[link] += sum(tensor.ByteSize() for tensor in wire)
        return np.concatenate([decode(tensor) for tensor in wire])


def run_codecs(chain: BareChain, model: Chain, samples: list[np.ndarray]) -> dict[Codec, Outcome]:
    """Every sample through every block, its activation round-tripped by each codec at each link.

    The blocks up to the first link run once (their exits do not depend on the codec); each codec runs the rest.
    """
    links = [model.hosted[tier].last for tier in (Tier.DEVICE, Tier.EDGE)]
    outcomes = {c: Outcome(np.empty((len(samples), model.num_blocks), np.int64), np.zeros(2)) for c in CODECS}
    for rows in _batches(samples):
        x, before_link = np.concatenate([samples[i] for i in rows]), []
        for block in range(1, links[0] + 1):
            logits, x = chain.run(x, block, block)
            before_link.append(logits.argmax(axis=1))
        for codec, outcome in outcomes.items():
            outcome.predictions[rows, : links[0]] = np.stack(before_link, axis=1)
            y = outcome.cross(x, 0, codec)
            for block in range(links[0] + 1, model.num_blocks + 1):
                logits, y = chain.run(y, block, block)
                outcome.predictions[rows, block - 1] = logits.argmax(axis=1)
                if block in links:
                    y = outcome.cross(y, links.index(block), codec)
    for outcome in outcomes.values():
        outcome.link_bytes /= len(samples)
    return outcomes


def _batches(samples: list[np.ndarray]) -> list[np.ndarray]:
    """Indices of samples of equal shape, at most :data:`BATCH` per batch."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, sample in enumerate(samples):
        by_shape.setdefault(sample.shape, []).append(i)
    return [np.array(rows[start : start + BATCH]) for rows in by_shape.values() for start in range(0, len(rows), BATCH)]


def codec_report(models_dir: Path, limit: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per test set and codec: link bytes, final-exit accuracy, and changes against fp32 (points).

    ``limit`` takes only the first samples of each set (a smoke run); the report's figures use them all.
    """
    report: dict[str, dict[str, dict[str, float]]] = {}
    for scenario in (s for s in SCENARIOS if s.name in TEST_SETS):
        package = scenario.package_dir(models_dir)
        manifest = load_manifest(package)
        inputs = LOADERS[scenario.data](scenario, manifest, package)
        samples, labels = inputs.samples[:limit], inputs.labels[:limit]
        chain, model = BareChain(package, threads=2), Chain.of(manifest)
        first_behind_link = model.hosted[Tier.DEVICE].last
        outcomes = run_codecs(chain, model, samples)
        exact = outcomes["fp32"].predictions == labels[:, None]
        report[scenario.name] = {}
        for codec, outcome in outcomes.items():
            correct = outcome.predictions == labels[:, None]
            change = 100 * (correct.mean(axis=0) - exact.mean(axis=0))[first_behind_link:]  # exits behind a link
            report[scenario.name][codec] = {
                "samples": len(samples),
                "device_edge_bytes": float(outcome.link_bytes[0]),
                "edge_cloud_bytes": float(outcome.link_bytes[1]),
                "bytes_vs_fp32": float(outcomes["fp32"].link_bytes.sum() / outcome.link_bytes.sum()),
                "final_accuracy": 100 * float(correct[:, -1].mean()),
                "final_change_points": float(change[-1]),
                "worst_exit_change_points": float(change[np.abs(change).argmax()]),
            }
    return report
