"""The ``Tier`` service: the edge and the cloud resume samples sent by the tier before.

A ``ContinueRequest``, or a sample of a ``ContinueColumns``
(:mod:`splitexit.shared.columns`: decoded, and its plan parsed, with its column), comes through the tier's request
pipeline (:mod:`splitexit.shared.pipeline`: metrics, validation, admission, deadline,
error mapping) and becomes a :class:`~splitexit.shared.node.Sample` once: its
model looked up, its activation checked against the block's input spec before
any value is read, its plan parsed. Then the tier's
:class:`~splitexit.shared.node.TierNode` runs it. A link's ``ContinueBatch`` goes
through as groups, one per model and one per column, each run together
(:meth:`~splitexit.shared.pipeline.Pipeline.run_many`,
:meth:`~splitexit.shared.node.TierNode.process_many`). The methods only adapt gRPC to that.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc

from splitexit.policies.plan import Plan, TierThresholds
from splitexit.shared.columns import unpack
from splitexit.shared.deadlines import CALL_DEADLINE, Deadline
from splitexit.shared.node import Outcome, TierNode
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

    async def resume(self, request: pb.ContinueRequest, deadline: Deadline) -> pb.InferResponse:
        """Decode a request the pipeline let in into a sample and run this tier's part of it."""
        return await self.node.process(self._sample(request, deadline))

    def resume_many(
        self, requests: list[pb.ContinueRequest | ColumnEntry], deadlines: list[Deadline]
    ) -> AsyncIterator[list[tuple[int, Outcome]]]:
        """The group handler of a link message's samples of one model: (index, answer or error), as they are
        ready."""
        return self.node.process_each([self._sample_or_error(r, d) for r, d in zip(requests, deadlines)])

    def _sample_or_error(self, request: pb.ContinueRequest | ColumnEntry, deadline: Deadline) -> Sample | Exception:
        try:
            return self._sample(request, deadline)
        except Exception as error:  # noqa: BLE001 - the sample's own error, answered under its id
            return error

    def _sample(self, request: pb.ContinueRequest | ColumnEntry, deadline: Deadline) -> Sample:
        """The sample a request (decoded and checked here) or a column entry (decoded with its column) is."""
        received_at = time.perf_counter()
        model = self.node.registry.get(request.model)
        if isinstance(request, ColumnEntry):
            x, codec_s, plan = request.x, request.codec_s, request.plan
        else:
            model.check_resumable(request.next_block)
            spec = model.manifest.block(request.next_block).input
            x = decode(request.activation, spec, f"the activation for block {request.next_block}")
            codec_s = time.perf_counter() - received_at
            plan = Plan.from_proto(request.policy, model.manifest.num_blocks, TierThresholds.name)
        return Sample(
            model=model,
            request_id=request.request_id,
            start_block=request.next_block,
            x=x,
            plan=plan,
            top_k=request.top_k,
            received_at=received_at,
            deadline=deadline,
            allow_degraded=not request.forbid_degraded,
            codec_s=codec_s,
        )

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

    async def _each_request(
        self, batches: AsyncIterator[pb.ContinueBatch | Undecodable]
    ) -> AsyncIterator[Request | list[Request]]:
        """Every batch as groups of one model's samples: its requests by model, then each column's entries (an
        undecodable batch passes as one bad request)."""
        async for batch in batches:
            if isinstance(batch, Undecodable):
                yield batch
                continue
            by_model: dict[str, list[Request]] = {}
            for request in batch.requests:
                by_model.setdefault(request.model, []).append(request)
            for group in by_model.values():
                yield group if len(group) > 1 else group[0]  # a lone request takes the lean path
            for columns in batch.columns:
                yield unpack(columns, self.node.registry.get, self.node.pipeline.where)

    def _serve(self, method: str, requests: AsyncIterator[Request]) -> AsyncIterator[list[pb.StreamResponse]]:
        node = self.node
        setting = f"{tier_env_prefix(node.tier)}MAX_IN_FLIGHT"
        route = StreamRoute(
            pipeline=node.pipeline,
            method=method,
            handler=self.resume,
            group_handler=self.resume_many,
            limit=node.settings.max_in_flight,
            setting=setting,
        )
        return serve_stream(requests, route, node.drain)
