"""What the client returns: typed, immutable views of the device's answers, derived from the proto.

Every answer type is generated from ``protos/splitexit.proto`` by ``make proto``
(:mod:`splitexit.shared.proto.splitexit_views`): a field added to the proto is
a field here, with the proto's comment. :class:`Prediction` is one
``InferResponse``, :class:`ModelInfo` one ``ModelMetadataResponse``,
:class:`ModelList` the ``ListModelsResponse`` and :class:`PolicyState` what a
policy has learned, :class:`BatchPrediction` one ``InferBatchResponse``; nested
messages (``Hop``, ``StageTimings``, ...) are views too, tiers are
:class:`~splitexit.shared.tiers.Tier` and a field the proto gives presence
(``degradation``, a oneof member) is None when unset. Prediction and
ModelInfo keep their protobuf message as ``.message``; :meth:`Prediction.to_dict`
is the answer as the HTTP gateway and ``splitexit infer --json`` print it (the
proto3 JSON mapping with proto field names), so every surface spells it the same
way. :class:`ClientError` is a failed call (raised by ``infer``, yielded by the
streaming helper for one sample).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from splitexit.shared.errors import status_from_number
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto import splitexit_views as views
from splitexit.shared.schema import shorten_enums

ClassProbability = views.ClassProbability
Degradation = views.Degradation
Hop = views.Hop
StageTimings = views.StageTimings
HostedRange = views.HostedRange
PolicyState = views.PolicyState


def message_json(message: Message) -> dict[str, Any]:
    """A message as the JSON every surface uses: proto field names, every field present, enums by short name."""
    data = MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )
    shorten_enums(message, data)
    return data


@dataclass(frozen=True)
class Prediction(views.InferResponse):
    """One answer: the class, where the sample exited, what every hop cost."""

    message: pb.InferResponse = field(default_factory=pb.InferResponse, repr=False, compare=False)

    @classmethod
    def from_message(cls, message: pb.InferResponse) -> Self:
        return dataclasses.replace(super().from_message(message), message=message)

    @property
    def latency_s(self) -> float:
        """The device's time from receipt to answer (the whole journey as the device saw it)."""
        timings = self.hops[0].timings if self.hops else None
        return timings.total_s if timings is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        return message_json(self.message)


@dataclass(frozen=True)
class BatchPrediction(views.InferBatchResponse):
    """The answers to one batch, as columns (sample i's entry at index i); ``failures`` holds the samples that
    got none."""

    message: pb.InferBatchResponse = field(default_factory=pb.InferBatchResponse, repr=False, compare=False)

    @classmethod
    def from_message(cls, message: pb.InferBatchResponse) -> Self:
        return dataclasses.replace(super().from_message(message), message=message)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def failures(self) -> dict[int, ClientError]:
        """Each sample without an answer, by index: its status and the message its own ``infer`` would raise."""
        return {
            error.index: ClientError(status_from_number(error.code), error.message, self.request_ids[error.index])
            for error in self.errors
        }

    def ranked(self, index: int) -> list[tuple[str, float]]:
        """Sample ``index``'s top-k as (label name, probability), best first (empty for a failed sample)."""
        return [(self.label_names[label], probability) for label, probability in self._top_k(index)]

    def _top_k(self, index: int) -> list[tuple[int, float]]:
        k = self.top_k
        labels = self.top_k_labels[index * k : (index + 1) * k]
        probabilities = self.top_k_probabilities[index * k : (index + 1) * k]
        return [(label, probability) for label, probability in zip(labels, probabilities) if label >= 0]

    def prediction(self, index: int) -> Prediction:
        """Sample ``index``'s answer as a :class:`Prediction` of the fields a batch carries: no logits, and of its hops
        only the device's total time (``latency_s``), where the device sent it."""
        columns = self.message
        top_k = [
            pb.ClassProbability(label=label, label_name=self.label_names[label], probability=probability)
            for label, probability in self._top_k(index)
        ]
        return Prediction.from_message(
            pb.InferResponse(
                request_id=columns.request_ids[index],
                model=columns.model,
                label=columns.labels[index],
                label_name=self.label_names[columns.labels[index]] if columns.labels[index] >= 0 else "",
                confidence=columns.confidences[index],
                top_k=top_k,
                exit_tier=columns.exit_tiers[index],
                exit_block=columns.exit_blocks[index],
                policy=columns.policies[index],
                cost=columns.costs[index],
                degraded=columns.degraded[index],
                hops=self._device_hop(index),
            )
        )

    def _device_hop(self, index: int) -> list[pb.Hop]:
        """Sample ``index``'s device hop with only its total time; none from a device older than ``latencies_s``."""
        if index >= len(self.latencies_s):
            return []
        return [pb.Hop(tier=pb.TIER_NAME_DEVICE, timings=pb.StageTimings(total_s=self.latencies_s[index]))]

    def to_dict(self) -> dict[str, Any]:
        return message_json(self.message)


@dataclass(frozen=True)
class ModelInfo(views.ModelMetadataResponse):
    """What a client must know to call a model (``Device.ModelMetadata``)."""

    message: pb.ModelMetadataResponse = field(default_factory=pb.ModelMetadataResponse, repr=False, compare=False)

    @classmethod
    def from_message(cls, message: pb.ModelMetadataResponse) -> Self:
        return dataclasses.replace(super().from_message(message), message=message)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """``image`` or ``text`` as a dict: channels, height, width, mean, std; or max_tokens, tokenizer_sha256."""
        which = self.image or self.text
        return dataclasses.asdict(which) if which is not None else {}


@dataclass(frozen=True)
class ModelList(views.ListModelsResponse):
    """The device's default model and every model it serves (``Device.ListModels``)."""

    models: tuple[ModelInfo, ...]

    @classmethod
    def from_message(cls, message: pb.ListModelsResponse) -> Self:
        return dataclasses.replace(
            super().from_message(message), models=tuple(map(ModelInfo.from_message, message.models))
        )


class ClientError(Exception):
    """A call the device refused or could not answer: the gRPC status and the device's message."""

    def __init__(self, code: grpc.StatusCode, message: str, request_id: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ClientError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code, details or code.name.lower().replace("_", " "))

    @classmethod
    def from_stream_error(cls, error: pb.StreamError) -> ClientError:
        codes = {code.value[0]: code for code in grpc.StatusCode}
        return cls(codes.get(error.code, grpc.StatusCode.UNKNOWN), error.message, error.request_id)
