"""``Device.Infer`` and ``Device.InferStream``: the only API clients call.

The device turns a request's input into block 1's tensor (decoding image
bytes, or checking a preprocessed tensor), asks its policy for the sample's
:class:`Plan` (unless the client spelled one out), then hands it to its
:class:`TierNode`, which runs the first blocks and passes the sample on if the
plan does not let it exit here. When the answer is back, the policy sees the
confidences the sample showed, so online policies learn without labels.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import grpc

from device.settings import DeviceSettings
from shared.errors import InvalidInput
from shared.node import Sample, TierNode
from shared.policy import OVERRIDE, Plan, Policy, TierThresholds, is_explicit, observed_confidences
from shared.preprocess import decode_image
from shared.proto import splitexit_pb2 as pb
from shared.proto import splitexit_pb2_grpc as pb_grpc
from shared.servicer import Handler, answer_stream, answer_unary
from shared.tensors import decode


class DeviceServicer(pb_grpc.DeviceServicer):
    def __init__(self, node: TierNode, settings: DeviceSettings) -> None:
        self.node = node
        self.settings = settings
        self.policies: dict[str, Policy] = {TierThresholds.name: TierThresholds()}

    def plan_for(self, request: pb.InferRequest, num_exits: int) -> tuple[Plan, Policy | None]:
        """The sample's plan, and the policy to tell what happened (None for a client's own plan)."""
        if is_explicit(request.policy):
            return Plan.from_proto(request.policy, num_exits, OVERRIDE), None
        name = request.policy.name or TierThresholds.name
        policy = self.policies.get(name)
        if policy is None:
            raise InvalidInput(f"no policy named {name!r}; this device offers {', '.join(sorted(self.policies))}")
        return policy.plan(), policy

    def sample_from(self, request: pb.InferRequest, plan: Plan, timeout_s: float | None) -> Sample:
        """Decode and check a request's input; raises InvalidInput / UnknownModel."""
        received_at = time.perf_counter()
        model = self.node.registry.get(request.model or self.settings.default_model)
        source = request.WhichOneof("input")
        if source == "image":
            size = len(request.image)
            if size > self.settings.max_image_bytes:
                raise InvalidInput(
                    f"the image is {size / 2**20:.1f} MiB; the device accepts at most "
                    f"{self.settings.max_image_bytes / 2**20:.1f} MiB (SPLITEXIT_DEVICE_MAX_IMAGE_BYTES)"
                )
            x = decode_image(request.image, model.manifest.input)
        elif source == "tensor":
            x = decode(request.tensor)
        else:
            raise InvalidInput("the request carries no input: set `image` (encoded bytes) or `tensor`")
        return Sample(
            model=model.name,
            request_id=request.request_id or uuid.uuid4().hex,
            start_block=1,
            x=x,
            plan=plan.to_proto(),
            top_k=request.top_k,
            received_at=received_at,
            timeout_s=timeout_s,
            decode_s=time.perf_counter() - received_at,
        )

    async def infer(self, request: pb.InferRequest, timeout_s: float | None) -> pb.InferResponse:
        """Plan, run and learn from one request (what both gRPC and HTTP call)."""
        model = self.node.registry.get(request.model or self.settings.default_model)
        plan, policy = self.plan_for(request, model.manifest.num_blocks)
        answer = await self.node.process(self.sample_from(request, plan, timeout_s))
        if policy is not None:
            policy.observe(plan, observed_confidences(answer))
        return answer

    def _handler(self, request: pb.InferRequest, timeout_s: float | None) -> Handler:
        return lambda: self.infer(request, timeout_s)

    async def Infer(self, request: pb.InferRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        return await answer_unary(self._handler(request, context.time_remaining()), context, "device")

    async def InferStream(
        self, request_iterator: AsyncIterator[pb.InferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for answer in answer_stream(
            request_iterator,
            lambda request: self._handler(request, None),
            lambda request: request.request_id,
            self.settings.stream_concurrency,
            "device",
        ):
            yield answer
