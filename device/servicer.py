"""``Device.Infer`` and ``Device.InferStream``: the only API clients call.

The device turns a request's input into block 1's tensor (decoding image
bytes, tokenizing UTF-8 text, or checking a preprocessed tensor), asks its policy for the sample's
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
import numpy as np

from device.policies import DevicePolicies
from device.settings import DeviceSettings
from shared.errors import InvalidInput, ServingError
from shared.manifest import TextInput
from shared.node import Sample, TierNode
from shared.policy import OVERRIDE, Plan, Policy, embed, is_explicit
from shared.preprocess import decode_image
from shared.proto import splitexit_pb2 as pb
from shared.proto import splitexit_pb2_grpc as pb_grpc
from shared.runtime import HostedModel
from shared.servicer import Handler, answer_stream, answer_unary
from shared.tensors import decode
from shared.text import TextTokenizer


class DeviceServicer(pb_grpc.DeviceServicer):
    def __init__(self, node: TierNode, settings: DeviceSettings) -> None:
        self.node = node
        self.settings = settings
        self.policies = DevicePolicies(settings, node.registry)
        self.tokenizers = {
            model.name: TextTokenizer.from_package(model.package_dir, model.manifest.input)
            for model in node.registry
            if isinstance(model.manifest.input, TextInput)
        }
        node.metrics.watch_policies(lambda: self.policies)

    def plan_for(self, request: pb.InferRequest, model: HostedModel, x: np.ndarray) -> tuple[Plan, Policy | None]:
        """The sample's plan, and the policy to tell what happened (None for a client's own plan)."""
        if is_explicit(request.policy):
            return Plan.from_proto(request.policy, model.manifest.num_blocks, OVERRIDE), None
        policy = self.policies.get(model.name, request.policy.name)
        return policy.plan(embed(x)), policy

    def sample_from(self, request: pb.InferRequest, timeout_s: float | None) -> Sample:
        """Decode and check a request's input (its plan is set once the policy has seen it)."""
        received_at = time.perf_counter()
        model = self.node.registry.get(request.model or self.settings.default_model)
        source = request.WhichOneof("input")
        if source == "image":
            expect_input(model, "image")
            check_size("image", len(request.image), self.settings.max_image_bytes)
            x = decode_image(request.image, model.manifest.input)
        elif source == "text":
            expect_input(model, "text")
            check_size("text", len(request.text), self.settings.max_text_bytes)
            x = self.tokenizers[model.name].encode_utf8(request.text, request.truncate)
        elif source == "tensor":
            x = decode(request.tensor)
        else:
            raise InvalidInput("the request carries no input: set `image` (encoded bytes), `text` (UTF-8) or `tensor`")
        return Sample(
            model=model.name,
            request_id=request.request_id or uuid.uuid4().hex,
            start_block=1,
            x=x,
            plan=pb.PolicyOverride(),
            top_k=request.top_k,
            received_at=received_at,
            timeout_s=timeout_s,
            decode_s=time.perf_counter() - received_at,
        )

    async def infer(self, request: pb.InferRequest, timeout_s: float | None) -> pb.InferResponse:
        """Plan, run and learn from one request (what both gRPC and HTTP call)."""
        model = self.node.registry.get(request.model or self.settings.default_model)
        sample = self.sample_from(request, timeout_s)
        plan, policy = self.plan_for(request, model, sample.x)
        sample.plan = plan.to_proto()
        answer = await self.node.process(sample)
        if policy is not None:
            self.policies.observe(model.name, policy, plan, answer)
        self.node.metrics.observe_answer(model.name, policy.name if policy is not None else OVERRIDE, plan, answer)
        return answer

    async def GetPolicyState(
        self, request: pb.PolicyStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicyState:
        try:
            model = self.node.registry.get(request.model or self.settings.default_model)
            return self.policies.message(model.name, request.policy)
        except ServingError as error:
            await context.abort(error.code, error.message)
            raise  # unreachable: abort raises

    def _handler(self, request: pb.InferRequest, timeout_s: float | None, method: str) -> Handler:
        model = request.model or self.settings.default_model
        return self.node.metrics.tracked(method, model, lambda: self.infer(request, timeout_s))

    async def Infer(self, request: pb.InferRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        return await answer_unary(self._handler(request, context.time_remaining(), "Infer"), context, "device")

    async def InferStream(
        self, request_iterator: AsyncIterator[pb.InferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for answer in answer_stream(
            request_iterator,
            lambda request: self._handler(request, None, "InferStream"),
            lambda request: request.request_id,
            self.settings.stream_concurrency,
            "device",
        ):
            yield answer


def check_size(kind: str, size: int, limit: int) -> None:
    """Raise :class:`InvalidInput` if a request's ``kind`` ("image" or "text") is over ``limit`` bytes."""
    if size > limit:
        raise InvalidInput(
            f"the {kind} is {size / 2**20:.1f} MiB ({size:,} bytes); the device accepts at most "
            f"{limit / 2**20:.1f} MiB (SPLITEXIT_DEVICE_MAX_{kind.upper()}_BYTES)"
        )


def expect_input(model: HostedModel, kind: str) -> None:
    """Raise :class:`InvalidInput` unless ``model`` takes ``kind`` input ("image" or "text")."""
    takes = model.manifest.input.kind
    if takes != kind:
        article = {"image": "an image", "text": "text"}
        raise InvalidInput(f"{model.name} takes {article[takes]}, not {article[kind]} ({model.manifest.task})")
