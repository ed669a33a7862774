"""`make demo`: three tiers on loopback, a few hundred real test images, a summary."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from shared import fashion_mnist
from splitexit.client import DeviceClient
from splitexit.report import Outcome, format_answer, format_summary, summarize
from splitexit.samples import LabelledImage, test_images
from splitexit.testbed import Testbed

CONCURRENCY = 4
HTTP_PORT = 8080


async def send_all(address: str, samples: list[LabelledImage], threshold: float | None) -> list[Outcome]:
    """Send every sample as its own ``Infer`` call, ``CONCURRENCY`` at a time, in order."""
    slots = asyncio.Semaphore(CONCURRENCY)
    async with DeviceClient(address) as client:

        async def one(sample: LabelledImage) -> Outcome:
            async with slots:
                started = time.perf_counter()
                response = await client.infer(sample.png, threshold=threshold)
                return Outcome(sample.label, response, time.perf_counter() - started)

        return await asyncio.gather(*(one(s) for s in samples))


def run(samples: int, show: int, threshold: float | None, seed: int, json_path: Path | None = None) -> None:
    images = test_images(samples, seed)
    print(f"Starting cloud, edge and device on loopback (logs in .cache/logs/) ...")
    with Testbed(http_port=HTTP_PORT) as bed:
        print(f"Device: gRPC {bed.device_address}, HTTP http://127.0.0.1:{HTTP_PORT}/v1/infer")
        print(f"Sending {samples} Fashion-MNIST test images to the device over gRPC:")
        outcomes = asyncio.run(send_all(bed.device_address, images, threshold))
    for outcome in outcomes[:show]:
        print(format_answer(outcome, list(fashion_mnist.LABELS)))
    print(f"  ... {len(outcomes) - show} more\n\nSummary")
    summary = summarize(outcomes)
    print(format_summary(summary))
    print("\nThe three tiers have stopped.")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2))
