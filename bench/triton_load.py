"""Load on Triton as its users send it: ``tritonclient`` gRPC, one sample per request, N requests in flight.

``python bench/triton_load.py ADDRESS INPUTS.npy COUNT N [N ...]`` runs in the
PyTriton environment (see :mod:`bench.triton_app`) and prints, as JSON, for each
N: samples/s and the p50 and p95 of a request's latency in ms over ``COUNT``
requests (after a warm-up).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np
import tritonclient.grpc.aio as triton

MODEL = "fmnist"


async def load(client: triton.InferenceServerClient, samples: np.ndarray, in_flight: int) -> dict[str, float]:
    """``len(samples)`` requests, ``in_flight`` callers each sending its share one request at a time."""
    seconds: list[float] = []

    async def caller(share: np.ndarray) -> None:
        for sample in share:
            request = triton.InferInput("x", [1, *sample.shape], "FP32")
            request.set_data_from_numpy(sample[None])
            started = time.perf_counter()
            await client.infer(MODEL, [request], outputs=[triton.InferRequestedOutput("logits")])
            seconds.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller(samples[i::in_flight]) for i in range(in_flight)))
    wall = time.perf_counter() - started
    return {
        "per_s": len(samples) / wall,
        "p50_ms": 1e3 * float(np.median(seconds)),
        "p95_ms": 1e3 * float(np.percentile(seconds, 95)),
    }


async def main() -> None:
    address, inputs, count, loads = sys.argv[1], np.load(sys.argv[2]), int(sys.argv[3]), map(int, sys.argv[4:])
    samples = inputs[np.arange(count) % len(inputs)]
    client = triton.InferenceServerClient(address)
    try:
        await load(client, samples[:50], 1)  # warm up
        report = {str(n): await load(client, samples, n) for n in loads}
    finally:
        await client.close()
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
