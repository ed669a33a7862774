"""What the HTTP gateway returns, as pydantic models: the OpenAPI schema of every answer and of every error.

The bodies themselves are the proto3 JSON mapping of the gRPC messages
(:func:`splitexit.results.message_json`: proto field names, enums by name, so a
tier is ``"EDGE"`` over HTTP exactly as in gRPC JSON and Node clients); these
models describe that JSON, and the tests validate real answers against them
(``extra="forbid"``), so the documentation cannot drift from what is sent.
Errors are RFC 9457 problem details (``application/problem+json``) carrying the
gRPC status name as ``code``.
"""

from __future__ import annotations

from typing import Any, Literal

import grpc
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

TierName = Literal["DEVICE", "EDGE", "CLOUD"]
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassProbability(Strict):
    label: int
    label_name: str
    probability: float


class StageTimings(Strict):
    """Seconds one tier spent on the sample, by stage."""

    queue_s: float
    decode_s: float
    compute_s: float
    codec_s: float
    network_s: float
    total_s: float


class Hop(Strict):
    tier: TierName
    first_block: int
    last_block: int
    timings: StageTimings
    bytes_sent: int
    exit_confidences: list[float]
    exit_labels: list[int]  # the label each exit it ran predicts


class Degradation(Strict):
    reason: Literal["NEXT_TIER_UNREACHABLE", "NEXT_TIER_OVERLOADED", "NEXT_TIER_TOO_SLOW"]
    tier: TierName
    message: str


class Answer(Strict):
    """``InferResponse``: the class, where the sample exited, what every hop cost."""

    request_id: str
    model: str
    label: int
    label_name: str
    confidence: float
    top_k: list[ClassProbability]
    logits: list[float]
    exit_tier: TierName
    exit_block: int
    hops: list[Hop]
    policy: str
    cost: float
    cost_final_layer: float
    degraded: bool
    degradation: Degradation | None = None  # present only when degraded


class ImagePreprocessing(Strict):
    channels: int
    height: int
    width: int
    mean: float
    std: float


class TextPreprocessing(Strict):
    max_tokens: int
    tokenizer_sha256: str


class TensorContract(Strict):
    dtype: Literal["FP32", "INT64"]
    shape: list[int]
    max_length: int
    vocab_size: int


class ExitInfo(Strict):
    block: int
    accuracy: float


class HostedRange(Strict):
    tier: TierName
    first_block: int
    last_block: int


class ModelMetadata(Strict):
    """``ModelMetadataResponse``: what to send, how to prepare it, what comes back."""

    name: str
    version: str
    task: str
    input_kind: Literal["image", "text"]
    image: ImagePreprocessing | None = None
    text: TextPreprocessing | None = None
    tensor: TensorContract
    labels: list[str]
    num_blocks: int
    exits: list[ExitInfo]
    hosted: list[HostedRange]
    policies: list[str]
    default_policy: str


class ModelList(Strict):
    """``ListModelsResponse``."""

    default_model: str
    models: list[ModelMetadata]


class Health(Strict):
    status: Literal["SERVING", "NOT_SERVING"]
    next_tier: Literal["SERVING", "NOT_SERVING", "UNKNOWN"]


class Problem(Strict):
    """An RFC 9457 problem: the HTTP status, the gRPC status name as ``code`` and ``title``, and the message."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str


def error_response(status: int, code: grpc.StatusCode, message: str) -> JSONResponse:
    """An RFC 9457 problem (:class:`Problem`)."""
    body = {"type": "about:blank", "title": code.name, "status": status, "code": code.name, "detail": message}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI's ``responses=`` for the error statuses a route can answer."""
    schema = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: schema}} for status in statuses}


def without_422(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI spec without FastAPI's 422 answers and their schemas: the gateway answers 400 instead."""
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = spec.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return spec
