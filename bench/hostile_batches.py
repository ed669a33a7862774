"""Hypothesis strategies for hostile batches: ``Device.InferBatch`` requests and ``Tier.ContinueBatches`` messages.

Both are built from the message types (:func:`bench.proto_strategies.messages`),
so a field added to ``InferBatchRequest`` or ``ContinueBatch`` later is sent
too, with hostile tensors and plans where it holds a ``Tensor`` or a ``Plan``.
A batch mixes good samples with bad ones (corrupt images among real ones,
tensors of the wrong shape or dtype), carries several kinds of input or none,
one more sample than the device accepts, request ids that do not match its
samples; a ``ContinueBatch`` is empty, a few hostile requests, or hundreds of
copies of one request (more than a tier lets in flight).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from bench.hostile_messages import (
    IMAGE_INPUT,
    MODELS,
    TEXT_INPUT,
    continue_requests,
    images,
    overrides,
    request_ids,
    tensors,
    texts,
    timeouts,
)
from bench.proto_strategies import messages
from splitexit.device.settings import DeviceSettings
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.settings import TierSettings
from splitexit.shared.tensors import encode

MAX_BATCH_SAMPLES: int = DeviceSettings.model_fields["max_batch_samples"].default
MAX_IN_FLIGHT: int = TierSettings.model_fields["max_in_flight"].default  # per stream of a tier
INPUTS = ("images", "texts", "tensor")  # InferBatchRequest's inputs, exactly one of which a good batch sets
HUGE_BATCH_BYTES = 16 << 20  # the most one copied-request ContinueBatch weighs
PLAN, TENSOR = pb.Plan.DESCRIPTOR.full_name, pb.Tensor.DESCRIPTOR.full_name


def _samples(batch: pb.InferBatchRequest) -> int:
    if batch.HasField("tensor"):
        return (batch.tensor.shape[:1] or [0])[0]
    return len(batch.images) or len(batch.texts)


def _keep(batch: pb.InferBatchRequest, kind: str, fit_ids: bool) -> pb.InferBatchRequest:
    """``batch`` with only its ``kind`` input (``"all"``: as drawn), and one request id per sample if ``fit_ids``."""
    for name in INPUTS:
        if kind not in ("all", name):
            batch.ClearField(name)
    count = _samples(batch)
    if fit_ids and batch.request_ids and 0 < count <= MAX_BATCH_SAMPLES:
        ids = [*batch.request_ids, *(f"id-{i}" for i in range(count))][:count]
        batch.ClearField("request_ids")
        batch.request_ids.extend(ids)
    return batch


def infer_batch_requests(
    sample_png: bytes, max_samples: int = MAX_BATCH_SAMPLES
) -> st.SearchStrategy[pb.InferBatchRequest]:
    """``Device.InferBatch`` requests for a device that takes at most ``max_samples`` per batch."""
    good_and_bad = st.lists(st.one_of(st.just(sample_png), images(sample_png)), max_size=12)
    one_too_many = st.integers(1, 3).map(lambda extra: [sample_png] * (max_samples + extra))
    counts = st.sampled_from([0, 1, 3, max_samples + 1, 2**40])
    stacked = st.tuples(counts, st.sampled_from([IMAGE_INPUT, TEXT_INPUT])).flatmap(
        lambda drawn: tensors([drawn[0], *drawn[1][1:]])
    )
    fields = {
        "model": st.sampled_from(MODELS),
        "policy": st.one_of(st.just(pb.Plan()), overrides()),  # an empty plan is the model's default policy
        "timeout_s": timeouts(),
        "images": st.one_of(good_and_bad, one_too_many),
        "texts": st.lists(texts(), max_size=12),
        "tensor": stacked,
        "request_ids": st.one_of(st.just([]), st.lists(request_ids(), max_size=12)),
    }
    batches = messages(pb.InferBatchRequest, by_field=fields, by_type={PLAN: overrides()})
    hostile = st.builds(_keep, batches, st.sampled_from(["images", "images", "texts", "tensor", "all"]), st.booleans())
    mixed = good_and_bad.filter(bool).map(lambda drawn: pb.InferBatchRequest(images=drawn))  # only the samples wrong
    return st.one_of(hostile, mixed, one_too_many.map(lambda drawn: pb.InferBatchRequest(images=drawn)))


def _copies(request: pb.ContinueRequest, count: int) -> list[pb.ContinueRequest]:
    return [request] * min(count, HUGE_BATCH_BYTES // max(request.ByteSize(), 1))


def continue_batches(activations: dict[str, list[int]]) -> st.SearchStrategy[pb.ContinueBatch]:
    """``Tier.ContinueBatches`` messages; ``activations`` as for :func:`~bench.hostile_messages.continue_requests`."""
    hostile = continue_requests(activations)
    good = [  # one per block: the tier drawn answers those it hosts
        pb.ContinueRequest(
            model="fmnist-cnn",
            request_id=f"good-{block}",
            next_block=int(block),
            activation=encode(np.zeros(shape, np.float32)),
        )
        for block, shape in sorted(activations.items())
    ]
    huge = st.builds(
        _copies, st.one_of(st.sampled_from(good), hostile), st.integers(MAX_IN_FLIGHT + 1, MAX_IN_FLIGHT * 3 // 2)
    )
    mixed = st.lists(st.one_of(st.sampled_from(good), hostile), min_size=1, max_size=8)
    requests = st.one_of(st.just([]), mixed, huge)
    any_activation = st.sampled_from(sorted(activations.values())).flatmap(tensors)
    return messages(
        pb.ContinueBatch,
        by_field={"requests": requests},
        by_type={TENSOR: any_activation, PLAN: overrides(), pb.ContinueRequest.DESCRIPTOR.full_name: hostile},
    )
