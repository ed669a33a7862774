"""The ``Tier`` service: the edge and the cloud resume samples sent by the tier before.

A ``ContinueRequest`` becomes a :class:`~splitexit.shared.node.Sample` once, on
receipt: admitted (or RESOURCE_EXHAUSTED), its deadline set, its model looked
up, its activation checked against the block's input spec before any value is
read, its plan parsed. Then the tier's :class:`~splitexit.shared.node.TierNode`
runs it. Metrics and status mapping are the serving interceptor's
(:mod:`splitexit.shared.interceptors`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator

import grpc

from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.deadlines import CALL_DEADLINE, Deadline, deadline_for
from splitexit.shared.interceptors import Undecodable, check_request
from splitexit.shared.node import Sample, TierNode
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.streams import serve_stream
from splitexit.shared.tensors import decode


class TierServicer(pb_grpc.TierServicer):
    """The ``Tier`` service of the edge and the cloud."""

    def __init__(self, node: TierNode) -> None:
        self.node = node

    async def resume(self, request: pb.ContinueRequest, inherited: Deadline | None) -> pb.InferResponse:
        """Decode ``request`` into a sample and run this tier's part of it."""
        check_request(request)
        with self.node.admission.admit():
            received_at = time.perf_counter()
            timeout_s = request.timeout_s if request.HasField("timeout_s") else None
            deadline = deadline_for(timeout_s, inherited, self.node.settings.default_timeout_s)
            model = self.node.registry.get(request.model)
            model.check_resumable(request.next_block)
            spec = model.manifest.block(request.next_block).input
            x = decode(request.activation, spec, f"the activation for block {request.next_block}")
            sample = Sample(
                model=model,
                request_id=request.request_id,
                start_block=request.next_block,
                x=x,
                plan=Plan.from_proto(request.policy, model.manifest.num_blocks, TierThresholds.name),
                top_k=request.top_k,
                received_at=received_at,
                deadline=deadline,
                allow_degraded=not request.forbid_degraded,
                codec_s=time.perf_counter() - received_at,
            )
            return await self.node.process(sample)

    async def Continue(self, request: pb.ContinueRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        return await self.resume(request, CALL_DEADLINE.get())

    async def ContinueStream(
        self, request_iterator: AsyncIterator[pb.ContinueRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for ready in self._serve(request_iterator):
            for answer in ready:
                yield answer

    async def ContinueBatches(
        self, request_iterator: AsyncIterator[pb.ContinueBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamBatch]:
        async for ready in self._serve(_each_request(request_iterator)):
            yield pb.StreamBatch(answers=ready)

    def _serve(self, requests: AsyncIterator[pb.ContinueRequest]) -> AsyncIterator[list[pb.StreamResponse]]:
        node = self.node
        handle = functools.partial(self.resume, inherited=None)
        return serve_stream(requests, handle, node.settings.max_in_flight, node.tier.value, node.drain)


async def _each_request(batches: AsyncIterator[pb.ContinueBatch]) -> AsyncIterator[pb.ContinueRequest]:
    """The requests of every batch, in order (an undecodable batch passes as one bad request)."""
    async for batch in batches:
        if isinstance(batch, Undecodable):
            yield batch
        else:
            for request in batch.requests:
                yield request
