"""What the client returns: typed, immutable views of the device's answers, with the wire message kept.

:class:`Prediction` is one ``InferResponse``; :class:`ModelInfo` one model's
``ModelMetadataResponse``; :class:`ClientError` a failed call (raised by
``infer``, yielded by the streaming helper for one sample). Each keeps its
protobuf message as ``.message``; :meth:`Prediction.to_dict` is the answer as
the HTTP gateway and ``splitexit infer --json`` print it (the proto3 JSON
mapping with proto field names), so every surface spells it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier


def message_json(message: Message) -> dict[str, Any]:
    """A message as the JSON every surface uses: proto field names, every field present, enums by name."""
    return MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True, unquote_int64_if_possible=True
    )


@dataclass(frozen=True)
class ClassScore:
    label: int
    label_name: str
    probability: float


@dataclass(frozen=True)
class Hop:
    """One tier's part in a sample's journey; times in seconds."""

    tier: Tier
    first_block: int
    last_block: int
    bytes_sent: int
    exit_confidences: tuple[float, ...]
    queue_s: float
    decode_s: float
    compute_s: float
    codec_s: float
    network_s: float
    total_s: float

    @classmethod
    def from_message(cls, hop: pb.Hop) -> Hop:
        t = hop.timings
        return cls(
            Tier.from_proto(hop.tier), hop.first_block, hop.last_block, hop.bytes_sent, tuple(hop.exit_confidences),
            t.queue_s, t.decode_s, t.compute_s, t.codec_s, t.network_s, t.total_s,
        )  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    """One answer: the class, where the sample exited, what every hop cost."""

    request_id: str
    model: str
    label: int
    label_name: str
    confidence: float
    top_k: tuple[ClassScore, ...]
    exit_tier: Tier
    exit_block: int
    hops: tuple[Hop, ...]
    policy: str
    cost: float
    cost_final_layer: float
    logits: tuple[float, ...]
    degraded: bool
    degradation: str  # why, for people ("" unless degraded)
    message: pb.InferResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, answer: pb.InferResponse) -> Prediction:
        return cls(
            answer.request_id, answer.model, answer.label, answer.label_name, answer.confidence,
            tuple(ClassScore(c.label, c.label_name, c.probability) for c in answer.top_k),
            Tier.from_proto(answer.exit_tier), answer.exit_block, tuple(Hop.from_message(h) for h in answer.hops),
            answer.policy, answer.cost, answer.cost_final_layer, tuple(answer.logits), answer.degraded, answer.degradation.message if answer.degraded else "", answer,
        )  # fmt: skip

    @property
    def latency_s(self) -> float:
        """The device's time from receipt to answer (the whole journey as the device saw it)."""
        return self.hops[0].total_s if self.hops else 0.0

    def to_dict(self) -> dict[str, Any]:
        return message_json(self.message)


@dataclass(frozen=True)
class ModelInfo:
    """What a client must know to call a model (``Device.ModelMetadata``)."""

    name: str
    version: str
    task: str
    input_kind: str  # "image" or "text"
    labels: tuple[str, ...]
    num_blocks: int
    hosted: dict[Tier, tuple[int, int]]
    policies: tuple[str, ...]
    default_policy: str
    preprocessing: dict[str, Any]  # image: channels, height, width, mean, std; text: max_tokens, tokenizer_sha256
    message: pb.ModelMetadataResponse = field(repr=False, compare=False)

    @classmethod
    def from_message(cls, info: pb.ModelMetadataResponse) -> ModelInfo:
        which = info.WhichOneof("preprocessing")
        return cls(
            info.name, info.version, info.task, info.input_kind, tuple(info.labels), info.num_blocks,
            {Tier.from_proto(h.tier): (h.first_block, h.last_block) for h in info.hosted},
            tuple(info.policies), info.default_policy,
            message_json(getattr(info, which)) if which else {}, info,
        )  # fmt: skip


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
