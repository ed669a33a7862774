"""Served latency and throughput, measured from a client process with raw gRPC stubs.

Every loop here is bounded by a count of requests; the callers pick counts that
take a few seconds. Rates count answered samples per second of wall time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from splitexit.client import TLS, open_channel
from splitexit.shared.link import TierLink
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc

TIMEOUT_S = 60.0


async def sequential(
    address: str, requests: Sequence[pb.InferRequest], tls: TLS | bool = False
) -> tuple[np.ndarray, list[pb.InferResponse]]:
    """Seconds per request, one unary call at a time, and the answers."""
    seconds, answers = [], []
    async with open_channel(address, tls, retries=0) as channel:
        stub = pb_grpc.DeviceStub(channel)
        for request in requests:
            started = time.perf_counter()
            answers.append(await stub.Infer(request, timeout=TIMEOUT_S))
            seconds.append(time.perf_counter() - started)
    return np.array(seconds), answers


def latency_report(seconds: Sequence[float], wall_s: float) -> dict[str, float]:
    """Answered requests per second of ``wall_s``, and the p50 and p95 of their latencies in ms."""
    return {
        "per_s": len(seconds) / wall_s,
        "p50_ms": 1e3 * float(np.median(seconds)),
        "p95_ms": 1e3 * float(np.percentile(seconds, 95)),
    }


async def unary_load(address: str, requests: Sequence[pb.InferRequest], clients: int) -> dict[str, float]:
    """``clients`` callers, each sending its share one unary call at a time: :func:`latency_report`."""
    seconds: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DeviceStub(channel)

        async def caller(share: Sequence[pb.InferRequest]) -> None:
            for request in share:
                started = time.perf_counter()
                await stub.Infer(request, timeout=TIMEOUT_S)
                seconds.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(caller(requests[i::clients]) for i in range(clients)))
        return latency_report(seconds, time.perf_counter() - started)


async def unary_rate(address: str, requests: Sequence[pb.InferRequest], clients: int) -> float:
    """Samples/s with ``clients`` callers, each sending its share one unary call at a time."""
    return (await unary_load(address, requests, clients))["per_s"]


async def offered_load(address: str, requests: Sequence[pb.InferRequest], rate: float) -> dict[str, float]:
    """Each request unary, sent at a fixed ``rate`` per second whatever the answers do (an open loop)."""
    seconds: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DeviceStub(channel)

        async def one(request: pb.InferRequest) -> None:
            started = time.perf_counter()
            await stub.Infer(request, timeout=TIMEOUT_S)
            seconds.append(time.perf_counter() - started)

        calls = []
        started = time.perf_counter()
        for count, request in enumerate(requests):
            await asyncio.sleep(max(started + count / rate - time.perf_counter(), 0.0))
            calls.append(asyncio.create_task(one(request)))
        await asyncio.gather(*calls)
        return latency_report(seconds, time.perf_counter() - started)


async def stream_rate(address: str, requests: Sequence[pb.InferRequest], in_flight: int) -> float:
    """Samples/s on one ``InferStream`` keeping ``in_flight`` requests outstanding."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.DeviceStub(channel).InferStream(timeout=TIMEOUT_S)
        room = asyncio.Semaphore(in_flight)

        async def write() -> None:
            for request in requests:
                await room.acquire()
                await call.write(request)
            await call.done_writing()

        started = time.perf_counter()
        writer = asyncio.create_task(write())
        answered = 0
        async for message in call:
            if message.HasField("error"):
                raise RuntimeError(f"the stream answered an error: {message.error.message}")
            answered += 1
            room.release()
        await writer
        return answered / (time.perf_counter() - started)


async def batch_rate(address: str, batches: Sequence[pb.InferBatchRequest], in_flight: int) -> float:
    """Samples/s sending ``batches`` as ``InferBatch`` calls, ``in_flight`` at once; every sample must be answered."""
    queue = iter(batches)
    answered = 0
    async with grpc.aio.insecure_channel(address, [("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.DeviceStub(channel)

        async def caller() -> None:
            nonlocal answered
            for batch in queue:
                answer = await stub.InferBatch(batch, timeout=TIMEOUT_S)
                if answer.errors:
                    raise RuntimeError(f"the batch answered an error: {answer.errors[0].message}")
                answered += len(answer.labels)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(in_flight)))
        return answered / (time.perf_counter() - started)


async def link_rate(
    address: str, requests: Sequence[pb.ContinueRequest], in_flight: int, links: int = 1, columns: bool = True
) -> float:
    """Samples/s sent to one tier as the tier before it sends them: ``links`` :class:`TierLink` s, each on a
    connection of its own (as that many processes of the tier before would hold), ``in_flight`` at once in all;
    ``columns``: as the link's ``link_columns`` setting."""
    pool = [TierLink(address, 64 << 20, dial=_own_connection, columns=columns) for _ in range(links)]
    try:
        queue = iter(requests)

        async def sender(link: TierLink) -> None:
            for request in queue:
                await link.call(request, TIMEOUT_S)

        started = time.perf_counter()
        await asyncio.gather(*(sender(pool[n % links]) for n in range(in_flight)))
        return len(requests) / (time.perf_counter() - started)
    finally:
        await asyncio.gather(*(link.close() for link in pool))


def _own_connection(address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
    """A channel that shares no connection with other channels to the same address."""
    return grpc.aio.insecure_channel(address, [*options, ("grpc.use_local_subchannel_pool", 1)])
