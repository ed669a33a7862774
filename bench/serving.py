"""`make bench`: what serving across three tiers costs over bare onnxruntime.

For each exit policy setting (everything on the device, the default thresholds,
everything in the cloud) it sends the same real test images one at a time
through a local three-process testbed, and runs the same blocks the answers
used in-process with bare onnxruntime sessions. It reports p50/p95 latencies
and their ratios (served ÷ bare), which are stable across noisy machines where
absolute numbers are not, plus streamed throughput. Writes ``bench/results/serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lab.fashion_mnist import test_images
from splitexit.client import AsyncClient, request
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import load_manifest
from splitexit.shared.preprocess import decode_image
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.testbed import Testbed

RESULTS = Path(__file__).parent / "results" / "serving.json"
SETTINGS = {"all on device (α=0)": 0.0, "tier thresholds (α=0.9)": 0.9, "all in cloud (α=1)": 1.0}


def bare_latencies(package: Path, images: list[LabelledImage], blocks_used: list[int]) -> np.ndarray:
    """Seconds per sample to decode + run blocks 1..k in one process, k as the served answer used."""
    manifest = load_manifest(package)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(package / b.file), options) for b in manifest.blocks]
    seconds = []
    for image, last in zip(images, blocks_used, strict=True):
        started = time.perf_counter()
        x = decode_image(image.png, manifest.input)
        for session in sessions[:last]:
            _, x = session.run(["logits", "activation"], {"x": x})
        seconds.append(time.perf_counter() - started)
    return np.array(seconds)


async def served(address: str, images: list[LabelledImage], threshold: float) -> tuple[np.ndarray, list[int], dict]:
    """Sequential unary latencies and exit blocks, then streamed throughput."""
    latencies, blocks, link_bytes = [], [], 0
    async with AsyncClient(address) as client:
        for image in images:
            started = time.perf_counter()
            answer = await client.infer(image.png, threshold=threshold)
            latencies.append(time.perf_counter() - started)
            blocks.append(answer.exit_block)
            link_bytes += sum(hop.bytes_sent for hop in answer.hops)
        started = time.perf_counter()
        count = 0
        async for _ in client.infer_many(request(i.png, threshold=threshold, request_id=str(n)) for n, i in enumerate(images)):
            count += 1
        stream_s = time.perf_counter() - started
    return np.array(latencies), blocks, {"stream_samples_per_s": count / stream_s, "link_bytes_per_sample": link_bytes / len(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    package = DEFAULT_MODELS_DIR / "fmnist-cnn"
    images = test_images(args.samples, seed=2)
    report: dict = {"machine": {"cpus": platform.processor() or platform.machine(), "python": platform.python_version()},
                    "samples": args.samples, "settings": {}}
    with Testbed(log_dir=Path(".cache/logs/bench")) as bed:
        asyncio.run(served(bed.device_address, images[:20], 0.5))  # warm up sessions and the links
        for name, threshold in SETTINGS.items():
            latencies, blocks, extra = asyncio.run(served(bed.device_address, images, threshold))
            bare = bare_latencies(package, images, blocks)
            report["settings"][name] = {
                "threshold": threshold,
                "served_p50_ms": 1e3 * float(np.median(latencies)),
                "served_p95_ms": 1e3 * float(np.percentile(latencies, 95)),
                "bare_onnxruntime_p50_ms": 1e3 * float(np.median(bare)),
                "served_over_bare_p50": float(np.median(latencies) / np.median(bare)),
                "mean_exit_block": float(np.mean(blocks)),
                **extra,
            }
            print(f"{name:<26} " + "  ".join(f"{k}={v:.3f}" for k, v in report["settings"][name].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
