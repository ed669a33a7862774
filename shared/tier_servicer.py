"""The ``Tier`` service: the edge and the cloud resume samples sent by the tier before.

A ``ContinueRequest``, or a sample of a ``ContinueColumns``
(:mod:`splitexit.shared.columns`: decoded with its column), comes through the tier's request pipeline
(:mod:`splitexit.shared.pipeline`: metrics, validation, admission, deadline,
error mapping) and becomes a :class:`~splitexit.shared.node.Sample` once: its
model looked up, its activation checked against the block's input spec before
any value is read, its plan parsed. Then the tier's
:class:`~splitexit.shared.node.TierNode` runs it. The methods only adapt gRPC to that.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc

from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.columns import unpack
from splitexit.shared.deadlines import CALL_DEADLINE, Deadline
from splitexit.shared.node import TierNode
from splitexit.shared.pipeline import ColumnEntry, Request, Undecodable
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.sample import Sample
from splitexit.shared.settings import tier_env_prefix
from splitexit.shared.streams import StreamRoute, serve_stream
from splitexit.shared.tensors import decode


class TierServicer(pb_grpc.TierServicer):
    """The ``Tier`` service of the edge and the cloud."""

    def __init__(self, node: TierNode) -> None:
        self.node = node

    async def resume(self, request: pb.ContinueRequest | ColumnEntry, deadline: Deadline) -> pb.InferResponse:
        """Decode a request the pipeline let in into a sample and run this tier's part of it."""
        received_at = time.perf_counter()
        model = self.node.registry.get(request.model)
        if isinstance(request, ColumnEntry):  # decoded with its column
            x, codec_s = request.x, request.codec_s
        else:
            model.check_resumable(request.next_block)
            spec = model.manifest.block(request.next_block).input
            x = decode(request.activation, spec, f"the activation for block {request.next_block}")
            codec_s = time.perf_counter() - received_at
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
            codec_s=codec_s,
        )
        return await self.node.process(sample)

    async def Continue(self, request: pb.ContinueRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        deadline = CALL_DEADLINE.get()
        assert deadline is not None, "the pipeline sets every ContinueRequest's deadline"
        return await self.resume(request, deadline)

    async def ContinueStream(
        self, request_iterator: AsyncIterator[pb.ContinueRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for ready in self._serve("ContinueStream", request_iterator):
            for answer in ready:
                yield answer

    async def ContinueBatches(
        self, request_iterator: AsyncIterator[pb.ContinueBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamBatch]:
        async for ready in self._serve("ContinueBatches", self._each_request(request_iterator)):
            yield pb.StreamBatch(answers=ready)

    async def _each_request(self, batches: AsyncIterator[pb.ContinueBatch | Undecodable]) -> AsyncIterator[Request]:
        """The requests and column entries of every batch, in order (an undecodable batch passes as one bad
        request)."""
        async for batch in batches:
            if isinstance(batch, Undecodable):
                yield batch
                continue
            for request in batch.requests:
                yield request
            for columns in batch.columns:
                for entry in unpack(columns, self.node.registry.get, self.node.pipeline.where):
                    yield entry

    def _serve(self, method: str, requests: AsyncIterator[Request]) -> AsyncIterator[list[pb.StreamResponse]]:
        node = self.node
        setting = f"{tier_env_prefix(node.tier)}MAX_IN_FLIGHT"
        route = StreamRoute(
            pipeline=node.pipeline,
            method=method,
            handler=self.resume,
            limit=node.settings.max_in_flight,
            setting=setting,
        )
        return serve_stream(requests, route, node.drain)
