"""The transport floor: what a gRPC round trip of the same payloads costs between two processes.

``python -m bench.echo PORT`` serves ``bench.Echo``: ``Unary`` and ``Stream``
(bidirectional) answer each message with as many bytes as its first four bytes
ask for. :func:`floor` times a unary call and a stream ping-pong of a request
and answer the size of what the tiers exchange, so ``make bench`` can show
what serving adds beyond gRPC itself.
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import numpy as np

SERVICE = "bench.Echo"


def _answer(request: bytes) -> bytes:
    return bytes(int.from_bytes(request[:4], "little"))


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return _answer(request)


async def _stream(requests, context: grpc.aio.ServicerContext):  # noqa: ANN001, ANN202 - gRPC's generic handler
    async for request in requests:
        yield _answer(request)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def payload(request_bytes: int, answer_bytes: int) -> bytes:
    """A request of ``request_bytes`` asking for an answer of ``answer_bytes``."""
    return answer_bytes.to_bytes(4, "little") + bytes(max(request_bytes - 4, 0))


async def floor(address: str, request_bytes: int, answer_bytes: int, count: int = 300) -> dict[str, float]:
    """p50 seconds of a unary round trip and of a stream ping-pong carrying these sizes."""
    message = payload(request_bytes, answer_bytes)
    async with grpc.aio.insecure_channel(address) as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Unary")
        stream = channel.stream_stream(f"/{SERVICE}/Stream")()
        unary_s, stream_s = [], []
        for _ in range(count):
            started = time.perf_counter()
            await unary(message)
            unary_s.append(time.perf_counter() - started)
        for _ in range(count):
            started = time.perf_counter()
            await stream.write(message)
            await stream.read()
            stream_s.append(time.perf_counter() - started)
        await stream.done_writing()
    return {"unary_p50_s": float(np.median(unary_s[20:])), "stream_p50_s": float(np.median(stream_s[20:]))}


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
