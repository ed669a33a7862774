"""``Device.InferBatch``: one message of N samples, answered as N unary ``Infer`` calls would be, in columns.

:func:`sample_requests` checks what concerns the batch as a whole (a known
model, one input kind, at least one sample and at most ``max_batch_samples``,
one request id per sample if any) and splits it into N ``InferRequest``
messages with the batch's shared options. The servicer runs them through the
tier's pipeline as one group (:meth:`DeviceServicer.infer_many`), so each sample
gets the unary call's checks, policy and answer, and the tier's batcher runs
them together. :func:`batch_answer` lays the N outcomes out as the
``InferBatchResponse`` columns; a sample that failed gets a ``BatchError``
with the unary call's status and message.
"""

from __future__ import annotations

from collections.abc import Sequence

from splitexit.shared.errors import InputTooLarge, InvalidInput, ServingError
from splitexit.shared.manifest import TensorSpec
from splitexit.shared.node import DEFAULT_TOP_K
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tensors import check_wire

SAMPLE_METHOD = "InferBatchSample"  # the metrics' method label of one sample of a batch
SHARED = ("model", "top_k", "truncate", "forbid_degraded")  # copied as they are onto every sample's InferRequest


def sample_requests(batch: pb.InferBatchRequest, limit: int, block_input: TensorSpec) -> list[pb.InferRequest]:
    """The batch as one ``InferRequest`` per sample; raises for a batch that is wrong as a whole (a tensor that is
    not N of the model's ``block_input`` among others)."""
    kind = _input_kind(batch)
    count = (batch.tensor.shape[:1] or [0])[0] if kind == "tensor" else len(getattr(batch, kind))
    if count > limit:  # before any sample is looked at
        raise InputTooLarge(
            f"the batch has {count:,} samples; the device accepts at most {limit:,} per InferBatch "
            "(SPLITEXIT_DEVICE_MAX_BATCH_SAMPLES)"
        )
    inputs = _split(batch.tensor, block_input) if kind == "tensor" else list(getattr(batch, kind))
    ids = list(batch.request_ids)
    if ids and len(ids) != len(inputs):
        raise InvalidInput(
            f"the batch has {len(inputs)} samples but {len(ids)} request_ids: give one per sample or none"
        )
    shared = pb.InferRequest(**{name: getattr(batch, name) for name in SHARED})
    if batch.HasField("policy"):
        shared.policy.CopyFrom(batch.policy)
    if batch.HasField("timeout_s"):
        shared.timeout_s = batch.timeout_s
    requests = []
    for i, sample_input in enumerate(inputs):
        request = pb.InferRequest()
        request.CopyFrom(shared)
        request.request_id = ids[i] if ids else ""
        if isinstance(sample_input, pb.Tensor):
            request.tensor.CopyFrom(sample_input)
        else:
            setattr(request, "image" if batch.images else "text", sample_input)
        requests.append(request)
    return requests


def _input_kind(batch: pb.InferBatchRequest) -> str:
    """The field that carries the batch's samples: ``images``, ``texts`` or ``tensor``."""
    given = [name for name in ("images", "texts") if getattr(batch, name)]
    if batch.HasField("tensor"):
        given.append("tensor")
    if len(given) != 1:
        detail = " and ".join(given) if given else "no samples"
        raise InvalidInput(f"the batch carries {detail}: set exactly one of tensor ([N, ...]), images and texts")
    return given[0]


def _split(tensor: pb.Tensor, block_input: TensorSpec) -> list[pb.Tensor]:
    """A ``[N, ...]`` tensor as N tensors of shape ``[1, ...]``: its dtype, shape and size are checked once for the
    batch, each sample's values as a unary call's are."""
    if not tensor.shape or tensor.shape[0] < 1:
        raise InvalidInput(f"the batch tensor has shape {list(tensor.shape)}; it needs [N, ...] with N >= 1 samples")
    count, raw = tensor.shape[0], tensor.raw
    check_wire(tensor, block_input, "the batch tensor", rows=count)
    step = len(raw) // count
    return [
        pb.Tensor(
            dtype=tensor.dtype,
            shape=[1, *tensor.shape[1:]],
            raw=raw[i * step : (i + 1) * step],
            quantization=tensor.quantization if tensor.HasField("quantization") else None,
        )
        for i in range(count)
    ]


def batch_answer(
    model: HostedModel,
    top_k: int,
    requests: Sequence[pb.InferRequest],
    outcomes: Sequence[pb.InferResponse | ServingError],
) -> pb.InferBatchResponse:
    """The outcomes of a batch's samples (in request order) as the columns of one ``InferBatchResponse``."""
    labels = model.manifest.labels
    k = min(top_k or DEFAULT_TOP_K, len(labels))
    answer = pb.InferBatchResponse(model=model.name, top_k=k, label_names=labels)
    for index, (request, outcome) in enumerate(zip(requests, outcomes, strict=True)):
        answer.request_ids.append(request.request_id)
        if isinstance(outcome, ServingError):
            answer.errors.add(index=index, code=outcome.code.value[0], message=outcome.message)
            outcome = pb.InferResponse(label=-1)
        ranked = [(p.label, p.probability) for p in outcome.top_k][:k]
        ranked += [(-1, 0.0)] * (k - len(ranked))
        answer.labels.append(outcome.label)
        answer.confidences.append(outcome.confidence)
        answer.exit_blocks.append(outcome.exit_block)
        answer.exit_tiers.append(outcome.exit_tier)
        answer.degraded.append(outcome.degraded)
        answer.costs.append(outcome.cost)
        answer.policies.append(outcome.policy)
        answer.latencies_s.append(outcome.hops[0].timings.total_s if outcome.hops else 0.0)
        answer.top_k_labels.extend(label for label, _ in ranked)
        answer.top_k_probabilities.extend(probability for _, probability in ranked)
    return answer
