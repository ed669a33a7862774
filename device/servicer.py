"""``Device.Infer``, ``Device.InferStream`` and ``Device.InferBatch``: the only API clients call.

The device turns a request's input into block 1's tensor (decoding image
bytes, tokenizing UTF-8 text, or checking a preprocessed tensor), asks its
policy for the sample's :class:`Plan` (unless the client spelled one out), then
hands it to its :class:`TierNode`, which runs the first blocks and passes the
sample on if the plan does not let it exit here. When the answer is back, the
device prices its route with the one cost model and shows the policy the
confidences the sample showed, so online policies learn without labels.
Metrics, validation, admission, deadlines and status mapping are the tier's
request pipeline's (:mod:`splitexit.shared.pipeline`); the methods here only adapt gRPC to it. A batch
runs each of its samples through the pipeline as a unary call (:mod:`splitexit.device.batch`).

Nothing proportional to a request's size runs on the event loop before the
request is validated: sizes and shapes are checked first, and images are
decoded and texts tokenized on the decode threads, so one heavy request never
holds up the others; only small ones (a 28x28 PNG, a sentence), whose decoding
costs less than a thread hop, are decoded in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from splitexit.device.batch import SAMPLE_METHOD, batch_answer, sample_requests
from splitexit.device.discovery import list_models, model_metadata
from splitexit.device.policy_store import PolicyStore
from splitexit.device.settings import DeviceSettings
from splitexit.policies.dimee import embed
from splitexit.policies.plan import OVERRIDE, Plan, Policy, is_explicit
from splitexit.shared.deadlines import CALL_DEADLINE, Deadline
from splitexit.shared.errors import InputTooLarge, InvalidInput, ServingError
from splitexit.shared.manifest import TextInput
from splitexit.shared.node import Outcome, TierNode
from splitexit.shared.preprocess import SMALL_IMAGE_BYTES, open_image
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_pb2_grpc as pb_grpc
from splitexit.shared.runtime import HostedModel
from splitexit.shared.sample import Sample
from splitexit.shared.streams import StreamRoute, serve_stream
from splitexit.shared.tensors import decode
from splitexit.shared.tokenizer import TextTokenizer

SMALL_TEXT_BYTES = 2048  # texts up to this long are tokenized on the event loop (tens of µs)


class DeviceServicer(pb_grpc.DeviceServicer):
    def __init__(self, node: TierNode, settings: DeviceSettings) -> None:
        self.node = node
        self.settings = settings
        self.policies = PolicyStore(settings, node.registry)
        self.tokenizers: dict[str, TextTokenizer] = {}
        for model in node.registry:
            self._add_tokenizer(model)
        node.model_hooks.append(self._serve_model)
        node.metrics.watch_policies(lambda: self.policies)
        self._decoder = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="device-decode")
        node.pipeline.default_model = settings.default_model
        self._stream = StreamRoute(
            pipeline=node.pipeline,
            method="InferStream",
            handler=self.infer,
            limit=settings.stream_concurrency,
            setting="SPLITEXIT_DEVICE_STREAM_CONCURRENCY",
        )

    def _add_tokenizer(self, model: HostedModel) -> None:
        if isinstance(model.manifest.input, TextInput):
            self.tokenizers[model.name] = TextTokenizer.from_package(model.package_dir, model.manifest.input)

    def _serve_model(self, model: HostedModel) -> None:
        """Ready a package loaded while the device runs: its tokenizer, then its policies."""
        self._add_tokenizer(model)
        self.policies.add(model)

    def model_for(
        self, request: pb.InferRequest | pb.InferBatchRequest | pb.PolicyStateRequest | pb.ModelMetadataRequest
    ) -> HostedModel:
        """The model a request names, or the default one; raises NOT_FOUND."""
        return self.node.registry.get(request.model or self.settings.default_model)

    def plan_for(self, request: pb.InferRequest, model: HostedModel, x: np.ndarray) -> tuple[Plan, Policy | None]:
        """The sample's plan, and the policy to tell what happened (None for a client's own plan)."""
        if is_explicit(request.policy):
            return Plan.from_proto(request.policy, model.manifest.num_blocks, OVERRIDE), None
        policy = self.policies.get(model.name, request.policy.name)
        return policy.plan(embed(x) if policy.needs_embedding else None), policy

    async def block_input(self, request: pb.InferRequest, model: HostedModel) -> np.ndarray:
        """Check and decode a request's input into what block 1 takes (heavy decoding off the event loop)."""
        source = request.WhichOneof("input")
        loop = asyncio.get_running_loop()
        if source == "image":
            expect_input(model, "image")
            check_size("image", len(request.image), self.settings.max_image_bytes)
            image = open_image(request.image)
            if image.small:
                return image.tensor(model.manifest.input)
            return await loop.run_in_executor(self._decoder, image.tensor, model.manifest.input)
        if source == "text":
            expect_input(model, "text")
            check_size("text", len(request.text), self.settings.max_text_bytes)
            tokenizer = self.tokenizers[model.name]
            if _decodes_in_place(request):
                return tokenizer.encode_utf8(request.text, request.truncate)
            return await loop.run_in_executor(self._decoder, tokenizer.encode_utf8, request.text, request.truncate)
        if source == "tensor":
            return decode(request.tensor, model.manifest.block(1).input, "the input tensor")
        raise InvalidInput("the request carries no input: set `image` (encoded bytes), `text` (UTF-8) or `tensor`")

    async def infer(self, request: pb.InferRequest, deadline: Deadline) -> pb.InferResponse:
        """Plan, run, price and learn from one request the pipeline let in (the handler of gRPC and HTTP)."""
        sample, policy = await self._planned(request, deadline)
        return self._settled(sample, policy, await self.node.process(sample))

    async def infer_many(
        self, requests: list[pb.InferRequest], deadlines: list[Deadline]
    ) -> AsyncIterator[list[tuple[int, Outcome]]]:
        """The group handler of a batch's samples: each decoded and planned as :meth:`infer` does it, then all run
        together; (index, answer or error) of each, in chunks as they are ready."""
        planned = await self._planned_each(requests, deadlines)
        samples = [ready if isinstance(ready, BaseException) else ready[0] for ready in planned]
        async with contextlib.aclosing(self.node.process_each(samples)) as chunks:
            async for chunk in chunks:
                yield [
                    (i, outcome if isinstance(outcome, BaseException) else self._settled(*planned[i], outcome))
                    for i, outcome in chunk
                ]

    async def _planned_each(
        self, requests: list[pb.InferRequest], deadlines: list[Deadline]
    ) -> list[tuple[Sample, Policy | None] | BaseException]:
        """:meth:`_planned` of each request, or its error: one after another for inputs that decode in place (a
        task each would cost more than their decoding), concurrently for those the decode threads take."""
        planned: dict[int, tuple[Sample, Policy | None] | BaseException] = {}
        heavy = []
        for i, (request, deadline) in enumerate(zip(requests, deadlines, strict=True)):
            if not _decodes_in_place(request):
                heavy.append(i)
                continue
            try:
                planned[i] = await self._planned(request, deadline)
            except Exception as error:  # noqa: BLE001 - the sample's own error, as gather returns it
                planned[i] = error
        concurrent = await asyncio.gather(
            *(self._planned(requests[i], deadlines[i]) for i in heavy), return_exceptions=True
        )
        planned.update(zip(heavy, concurrent, strict=True))
        return [planned[i] for i in range(len(requests))]

    async def _planned(self, request: pb.InferRequest, deadline: Deadline) -> tuple[Sample, Policy | None]:
        """The sample a request is, with its plan, and the policy that made the plan (None for a client's own)."""
        received_at = time.perf_counter()
        model = self.model_for(request)
        x = await self.block_input(request, model)
        decode_s = time.perf_counter() - received_at
        plan, policy = self.plan_for(request, model, x)
        sample = Sample(
            model=model,
            request_id=request.request_id,
            start_block=1,
            x=x,
            plan=plan,
            top_k=request.top_k,
            received_at=received_at,
            deadline=deadline,
            allow_degraded=not request.forbid_degraded,
            decode_s=decode_s,
        )
        return sample, policy

    def _settled(self, sample: Sample, policy: Policy | None, answer: pb.InferResponse) -> pb.InferResponse:
        """``answer``, priced; the policy shown what the sample revealed; the answer counted in metrics."""
        model, plan = sample.model, sample.plan
        self.policies.settle(model, policy, plan, answer)
        self.node.metrics.observe_answer(model.name, policy.name if policy is not None else OVERRIDE, plan, answer)
        return answer

    async def infer_batch(self, batch: pb.InferBatchRequest, deadline: Deadline | None) -> pb.InferBatchResponse:
        """Every sample of ``batch`` through the pipeline as one group, as unary calls would be; the answers as
        columns."""
        model = self.model_for(batch)
        requests = sample_requests(batch, self.settings.max_batch_samples, model.manifest.block(1).input)
        outcomes: dict[int, pb.InferResponse | ServingError] = {}
        chunks = self.node.pipeline.run_many(SAMPLE_METHOD, requests, self.infer_many, transport=deadline)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                for i, outcome in chunk:
                    outcomes[i] = outcome
        return batch_answer(model, batch.top_k, requests, [outcomes[i] for i in range(len(requests))])

    def close(self) -> None:
        self._decoder.shutdown(wait=False, cancel_futures=True)

    async def GetPolicyState(self, request: pb.PolicyStateRequest, context: grpc.aio.ServicerContext) -> pb.PolicyState:
        return self.policies.message(self.model_for(request).name, request.policy)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return list_models(list(self.node.registry), self.policies, self.settings.default_model)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        return model_metadata(self.model_for(request), self.policies)

    async def Infer(self, request: pb.InferRequest, context: grpc.aio.ServicerContext) -> pb.InferResponse:
        deadline = CALL_DEADLINE.get()
        assert deadline is not None, "the pipeline sets every InferRequest's deadline"
        return await self.infer(request, deadline)

    async def InferBatch(
        self, request: pb.InferBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.InferBatchResponse:
        return await self.infer_batch(request, CALL_DEADLINE.get())

    async def InferStream(
        self, request_iterator: AsyncIterator[pb.InferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        async for ready in serve_stream(request_iterator, self._stream, self.node.drain):
            for answer in ready:
                yield answer


def _decodes_in_place(request: pb.InferRequest) -> bool:
    """Whether a request's input is small enough to be planned without a task of its own: a tensor, a text that
    :meth:`DeviceServicer.block_input` tokenizes on the loop, an image of at most ``SMALL_IMAGE_BYTES`` (one of
    few bytes but many pixels still goes to the decode threads, awaited in turn)."""
    source = request.WhichOneof("input")
    if source == "image":
        return len(request.image) <= SMALL_IMAGE_BYTES
    if source == "text":
        return len(request.text) <= SMALL_TEXT_BYTES
    return True


def check_size(kind: str, size: int, limit: int) -> None:
    """Raise :class:`InputTooLarge` if a request's ``kind`` ("image" or "text") is over ``limit`` bytes."""
    if size > limit:
        raise InputTooLarge(
            f"the {kind} is {size / 2**20:.1f} MiB ({size:,} bytes); the device accepts at most "
            f"{limit / 2**20:.1f} MiB (SPLITEXIT_DEVICE_MAX_{kind.upper()}_BYTES)"
        )


def expect_input(model: HostedModel, kind: str) -> None:
    """Raise :class:`InvalidInput` unless ``model`` takes ``kind`` input ("image" or "text")."""
    takes = model.manifest.input.kind
    if takes != kind:
        article = {"image": "an image", "text": "text"}
        raise InvalidInput(f"{model.name} takes {article[takes]}, not {article[kind]} ({model.manifest.task})")
