"""Bare onnxruntime: the same segments in one process, no gRPC — the yardstick of ``make bench``.

:class:`BareChain` runs a model package's blocks with plain sessions (one
intra-op thread each, as the tiers run them). :func:`sequential_seconds` times
one sample at a time, input decoding included, as a client of the tiers sees it;
:func:`best_batch_rate` runs stacked batches in ``processes`` processes at once
(one per core) and keeps the best batch size: the most this machine can do
with these segments, whatever serves them.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from splitexit.shared.manifest import load_manifest

BATCH_SIZES = (1, 8, 32, 64, 128)


class BareChain:
    """A package's segments as plain onnxruntime sessions."""

    def __init__(self, package: Path, threads: int = 1) -> None:
        manifest = load_manifest(package)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = {b.index: ort.InferenceSession(str(package / b.file), options) for b in manifest.blocks}

    def run(self, x: np.ndarray, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Blocks ``first`` to ``last`` on ``x``: the last exit's logits and the last activation."""
        logits = np.zeros(0, np.float32)
        for block in range(first, last + 1):
            logits, x = self.sessions[block].run(["logits", "activation"], {"x": x})
        return logits, x


def sequential_seconds(
    chain: BareChain, inputs: Sequence[object], prepare: Callable[[object], np.ndarray], last_block: int
) -> np.ndarray:
    """Seconds per sample to prepare it (decode, tokenize) and run blocks 1..``last_block``."""
    seconds = []
    for raw in inputs:
        started = time.perf_counter()
        chain.run(prepare(raw), 1, last_block)
        seconds.append(time.perf_counter() - started)
    return np.array(seconds)


def best_batch_rate(
    package: Path, samples: np.ndarray, first: int, last: int, processes: int, seconds: float = 1.0
) -> dict[int, float]:
    """Samples/s over ``processes`` processes running blocks ``first``..``last`` at each batch size."""
    context = multiprocessing.get_context("spawn")
    rates = {}
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        list(pool.map(_batch_worker, [(package, samples[:1], first, last, 0.1)] * processes))  # load, warm up
        for batch in BATCH_SIZES:
            stacked = np.concatenate([samples[i % len(samples)][None] for i in range(batch)])
            counts = pool.map(_batch_worker, [(package, stacked, first, last, seconds)] * processes)
            rates[batch] = sum(counts) / seconds
    return rates


_CHAINS: dict[Path, BareChain] = {}


def _batch_worker(job: tuple[Path, np.ndarray, int, int, float]) -> int:
    """In a worker process: how many samples of batch ``x`` ran through the blocks in ``seconds``."""
    package, x, first, last, seconds = job
    chain = _CHAINS.setdefault(package, BareChain(package))
    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        chain.run(x, first, last)
        done += len(x)
    return done
