"""``Device.ListModels`` and ``Device.ModelMetadata``: what a client must know to call a model.

One :class:`~splitexit.shared.proto.splitexit_pb2.ModelMetadataResponse` per model,
built from its manifest, the chain of hosted ranges the device serves it with and
the device's policies. gRPC returns it as is; the HTTP gateway's ``/v1/models``
returns the same message as JSON, so both surfaces describe a model the same way.
"""

from __future__ import annotations

from splitexit.device.policy_store import PolicyStore
from splitexit.policies.catalog import POLICY_NAMES
from splitexit.shared.manifest import ImageInput, TensorSpec
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.runtime import HostedModel
from splitexit.shared.tiers import TIERS

DTYPES = {"float32": pb.DATA_TYPE_FP32, "int64": pb.DATA_TYPE_INT64}


def tensor_contract(spec: TensorSpec) -> pb.TensorContract:
    """Block 1's input, batch 1, as the proto spells it (-1 for a dynamic axis)."""
    return pb.TensorContract(
        dtype=DTYPES[spec.dtype],
        shape=[1, *(-1 if size is None else size for size in spec.per_sample_shape())],
        max_length=spec.max_length or 0,
        vocab_size=spec.vocab_size or 0,
    )


def model_metadata(model: HostedModel, policies: PolicyStore) -> pb.ModelMetadataResponse:
    """Everything a client needs to call ``model`` on this device."""
    manifest = model.manifest
    accuracy = manifest.exit_accuracy or [0.0] * manifest.num_blocks
    answer = pb.ModelMetadataResponse(
        name=manifest.name,
        version=manifest.version,
        task=manifest.task,
        input_kind=manifest.input.kind,
        tensor=tensor_contract(manifest.block(1).input),
        labels=manifest.labels,
        num_blocks=manifest.num_blocks,
        exits=[pb.ExitInfo(block=k, accuracy=a) for k, a in enumerate(accuracy, start=1)],
        hosted=[
            pb.HostedRange(
                tier=tier.proto, first_block=model.chain.hosted[tier].first, last_block=model.chain.hosted[tier].last
            )
            for tier in TIERS
        ],
        policies=POLICY_NAMES,
        default_policy=policies.defaults[model.name],
    )
    spec = manifest.input
    if isinstance(spec, ImageInput):
        answer.image.CopyFrom(
            pb.ImagePreprocessing(
                channels=spec.channels, height=spec.height, width=spec.width, mean=spec.mean, std=spec.std
            )
        )
    else:
        answer.text.CopyFrom(pb.TextPreprocessing(max_tokens=spec.max_tokens, tokenizer_sha256=spec.tokenizer_sha256))
    return answer


def list_models(models: list[HostedModel], policies: PolicyStore, default_model: str) -> pb.ListModelsResponse:
    """Every model the device serves, default first named."""
    return pb.ListModelsResponse(default_model=default_model, models=[model_metadata(m, policies) for m in models])
