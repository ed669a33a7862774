"""Temperature scaling of every exit, fitted on a calibration split, and its expected calibration error.

An exit's confidence C_k is the top class probability of ``softmax(logits / T_k)``
(:func:`splitexit.shared.runtime.exit_probabilities`). With ``T_k = 1`` a shallow
exit and a deep one mean different things by "0.9"; fitting ``T_k`` to minimise
the negative log-likelihood on held-out data makes C_k match the exit's accuracy,
so one threshold α means the same at every exit. It changes no prediction (argmax)
and no ONNX slice: ``T_k`` lives in the manifest (``blocks[k].temperature``).

The logits come from the package's own ONNX segments (no torch), so any package
can be calibrated after it was exported; :func:`calibrate_package` writes the
temperatures, the per-exit ECE before and after on a test split (disjoint from the
calibration one) into ``evaluation.json``, and a new ``integrity.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from splitexit.shared.integrity import write_integrity
from splitexit.shared.manifest import Manifest, load_manifest, verified_segment_path
from splitexit.shared.runtime import exit_probabilities
from training.export import onnx_exits, open_session, write_manifest

ECE_BINS = 15
LOG_T_RANGE = (math.log(0.05), math.log(20.0))  # temperatures searched
SEARCH_STEPS = 60  # golden-section steps: the bracket shrinks to ~1e-12 of its width
FLOOR_DRAWS = 200
EVALUATION_FILE = "evaluation.json"
CALIBRATION_KEY = "calibration"


@dataclass(frozen=True)
class Split:
    """Block-1 inputs (``[1, ...]`` arrays, or one ``[N, ...]`` array) and their labels."""

    samples: Sequence[np.ndarray]
    labels: np.ndarray
    name: str  # what the split is, for evaluation.json


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    scaled = logits.astype(np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float((log_norm - shifted[np.arange(len(labels)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of least NLL, by golden-section search over log T (NLL is unimodal in it)."""
    ratio = (math.sqrt(5) - 1) / 2
    low, high = LOG_T_RANGE
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(SEARCH_STEPS):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, labels, math.exp(b))
    return round(math.exp((low + high) / 2), 4)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over ``bins`` equal-width confidence bins."""
    return binned_gap(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, bins)


def binned_gap(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(error)


def ece_noise_floor(probabilities: np.ndarray, draws: int = FLOOR_DRAWS, seed: int = 0) -> float:
    """The ECE a perfectly calibrated exit with these confidences still shows on this many samples (mean of draws).

    Each draw makes every sample right with probability equal to its confidence; the
    ECE that remains is sampling noise, which no temperature can remove.
    """
    confidence = probabilities.max(axis=1)
    rng = np.random.default_rng(seed)
    return float(np.mean([binned_gap(confidence, rng.random(len(confidence)) < confidence) for _ in range(draws)]))


def package_exit_logits(package_dir: Path, manifest: Manifest, samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``[N, classes]`` logits at every exit, through the package's checksum-verified ONNX segments."""
    sessions = [open_session(verified_segment_path(package_dir, block)) for block in manifest.blocks]
    per_sample = [onnx_exits(sessions, x) for x in tqdm(samples, desc=f"logits {package_dir.name}", unit="batch")]
    return [np.concatenate([exits[k] for exits in per_sample]) for k in range(manifest.num_blocks)]


def calibrate_package(package_dir: Path, calibration: Split, test: Split) -> dict[str, object]:
    """Fit every exit's temperature on ``calibration``, store it, report ECE on ``test``; returns the report."""
    manifest = load_manifest(package_dir)
    raw = [b.model_copy(update={"temperature": None}) for b in manifest.blocks]
    uncalibrated = manifest.model_copy(update={"blocks": raw})
    fit_logits = package_exit_logits(package_dir, uncalibrated, calibration.samples)
    test_logits = package_exit_logits(package_dir, uncalibrated, test.samples)
    temperatures = [fit_temperature(logits, calibration.labels) for logits in fit_logits]
    blocks = [b.model_copy(update={"temperature": t}) for b, t in zip(raw, temperatures, strict=True)]
    before = [exit_probabilities(z, b) for z, b in zip(test_logits, raw, strict=True)]
    after = [exit_probabilities(z, b) for z, b in zip(test_logits, blocks, strict=True)]
    report = {
        "method": f"temperature scaling per exit (NLL); ECE with {ECE_BINS} equal-width bins",
        "calibration_split": calibration.name,
        "calibration_samples": len(calibration.labels),
        "test_split": test.name,
        "test_samples": len(test.labels),
        "temperature": temperatures,
        "ece_before": [round(expected_calibration_error(p, test.labels), 4) for p in before],
        "ece_after": [round(expected_calibration_error(p, test.labels), 4) for p in after],
        "ece_noise_floor": [round(ece_noise_floor(p), 4) for p in after],
    }
    write_manifest(package_dir, manifest.model_copy(update={"blocks": blocks}))
    evaluation_path = package_dir / EVALUATION_FILE
    evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.is_file() else {}
    evaluation_path.write_text(json.dumps({**evaluation, CALIBRATION_KEY: report}, indent=2) + "\n")
    write_integrity(package_dir)
    return report
