"""``Tier.Continue`` and ``Tier.ContinueStream``: the edge and the cloud resume samples sent by the tier before.

A ``ContinueRequest`` becomes a :class:`~splitexit.shared.node.Sample` once, on
receipt: its model looked up, its activation decoded, its plan parsed. Then the
tier's :class:`~splitexit.shared.node.TierNode` runs it. Metrics and status
mapping are the serving interceptor's (:mod:`splitexit.shared.interceptors`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc

from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.node import Sample, TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.streams import serve_stream
from splitexit.shared.tensors import decode


class TierServicer(pb_grpc.TierServicer):
    """The ``Tier`` service of the edge and the cloud."""

    STREAM_CONCURRENCY = 256

    def __init__(self, node: TierNode) -> None:
        self.node = node

    async def resume(self, request: pb.ContinueRequest, timeout_s: float | None) -> pb.InferResponse:
        """Decode ``request`` into a sample and run this tier's part of it."""
        received_at = time.perf_counter()
        model = self.node.registry.get(request.model)
        x = decode(request.activation)
        sample = Sample(
            model=model,
            request_id=request.request_id,
            start_block=request.next_block,
            x=x,
            plan=Plan.from_proto(request.policy, model.manifest.num_blocks, TierThresholds.name),
            top_k=request.top_k,
            received_at=received_at,
            timeout_s=timeout_s,
            codec_s=time.perf_counter() - received_at,
        )
        return await self.node.process(sample)

    async def Continue(self, request: pb.ContinueRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        return await self.resume(request, context.time_remaining())

    async def ContinueStream(
        self, request_iterator: AsyncIterator[pb.ContinueRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for answer in serve_stream(
            request_iterator,
            lambda request: self.resume(request, request.timeout_s or None),
            self.STREAM_CONCURRENCY,
            self.node.tier.value,
        ):
            yield answer
