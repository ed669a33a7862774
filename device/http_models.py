"""The HTTP gateway's request and answer models, built from the proto's descriptors at import.

The answers are the proto3 JSON mapping of the gRPC messages
(:func:`splitexit.results.message_json`: proto field names, enums by name, every
field present, a field with presence left out when unset), so each answer
message of ``splitexit.proto`` becomes one pydantic model here (:func:`json_models`),
described by the proto's own comments. The routes validate what they return
against them, and they are the OpenAPI document's schemas: a field added to the
proto is in the answer, its validation and its documentation with no edit here.
They are built at import rather than generated (unlike the SDK's typed results)
because nothing reads them statically: FastAPI takes them at run time.

``POST /v1/infer`` takes ``InferRequest``'s fields as they are (:data:`AS_IS`),
except the few the gateway receives in another form (:data:`OTHER_FORM`) and
those HTTP has no form for (:data:`NOT_OVER_HTTP`); a field added to
``InferRequest`` is taken as it is; ``POST /v1/infer/batch`` takes ``InferBatchRequest``'s
the same way (:data:`BATCH_AS_IS`). Health answers and errors are not proto
messages: errors are RFC 9457 problem details (``application/problem+json``)
carrying the gRPC status name as ``code``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import grpc
from fastapi.responses import JSONResponse
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from pydantic import BaseModel, ConfigDict, Field, create_model

from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.proto.splitexit_views import DOCS
from splitexit.shared.schema import (
    INT_RANGES,
    absent_when_unset,
    answer_messages,
    is_map,
    json_names,
    map_types,
    scalar_type,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
HTTP_NAMES = {
    "InferResponse": "Answer",
    "InferBatchResponse": "BatchAnswer",
    "ListModelsResponse": "ModelList",
    "ModelMetadataResponse": "ModelMetadata",
}
STRICT = ConfigDict(extra="forbid")
OTHER_FORM = {  # InferRequest field -> what the gateway takes instead
    "image": "image_base64 (JSON) or the raw body (image/*, application/octet-stream)",
    "text": "text as a JSON string, or the raw body (text/plain)",
    "policy": "threshold and policy: Plan.threshold and Plan.name",
}
NOT_OVER_HTTP = {"request_id": "the device assigns one", "tensor": "gRPC only: raw tensor bytes"}
AS_IS = tuple(
    f.name for f in pb.InferRequest.DESCRIPTOR.fields if f.name not in OTHER_FORM.keys() | NOT_OVER_HTTP.keys()
)
BATCH_OTHER_FORM = {  # InferBatchRequest field -> what ``POST /v1/infer/batch`` takes instead
    "images": "images_base64: a list of base64 strings",
    "texts": "texts: a list of JSON strings",
    "policy": OTHER_FORM["policy"],
}
BATCH_NOT_OVER_HTTP = {"tensor": NOT_OVER_HTTP["tensor"]}
BATCH_AS_IS = tuple(
    f.name
    for f in pb.InferBatchRequest.DESCRIPTOR.fields
    if f.name not in BATCH_OTHER_FORM.keys() | BATCH_NOT_OVER_HTTP.keys()
)
IN_QUERY = tuple(  # what a raw body's query string can carry: the scalar fields
    name
    for name in AS_IS
    if (f := pb.InferRequest.DESCRIPTOR.fields_by_name[name]).message_type is None and not f.is_repeated
)


def _item_type(field: FieldDescriptor, models: dict[str, type[BaseModel]]) -> Any:
    """The JSON type of one value of ``field``: a name of its enum, its message's model, or a bounded scalar."""
    if field.enum_type is not None:
        return Literal[tuple(json_names(field.enum_type).values())]
    if field.message_type is not None:
        return models[field.message_type.full_name]
    if field.cpp_type in INT_RANGES:
        low, high = INT_RANGES[field.cpp_type]
        return Annotated[int, Field(ge=low, le=high)]
    kind = scalar_type(field)
    return str if kind is bytes else kind  # bytes travel as base64


def json_field(field: FieldDescriptor, models: dict[str, type[BaseModel]], docs: dict[str, str] = DOCS) -> Any:
    """``(annotation, Field)`` of ``field`` in the proto3 JSON mapping; the models of its messages in ``models``."""
    description = docs.get(field.full_name)
    if is_map(field):
        key, value = map_types(field)
        return dict[_item_type(key, models), _item_type(value, models)], Field(description=description)
    if field.is_repeated:
        return list[_item_type(field, models)], Field(description=description)
    if absent_when_unset(field):
        return _item_type(field, models) | None, Field(None, description=description)
    return _item_type(field, models), Field(description=description)


def json_models(
    messages: list[Descriptor], names: dict[str, str] = HTTP_NAMES, docs: dict[str, str] = DOCS
) -> dict[str, type[BaseModel]]:
    """A pydantic model per message (and per message its fields hold), by full name; OpenAPI names from ``names``."""
    models: dict[str, type[BaseModel]] = {}

    def build(message: Descriptor) -> None:
        if message.full_name in models or message.GetOptions().map_entry:
            return
        for field in message.fields:
            if field.message_type is not None:
                build(field.message_type)
        fields = {field.name: json_field(field, models, docs) for field in message.fields}
        model = create_model(names.get(message.name, message.name), __config__=STRICT, **fields)
        model.__doc__ = docs.get(message.full_name, f"``{message.full_name}`` in the proto3 JSON mapping.")
        models[message.full_name] = model

    for message in messages:
        build(message)
    return models


def answer_models(file: FileDescriptor = pb.DESCRIPTOR) -> dict[str, type[BaseModel]]:
    """The model of every message a ``Device`` client can get back, by message name."""
    return {model_name.rsplit(".", 1)[-1]: model for model_name, model in json_models(answer_messages(file)).items()}


ANSWERS = answer_models()
Answer = ANSWERS["InferResponse"]
BatchAnswer = ANSWERS["InferBatchResponse"]
ModelList = ANSWERS["ListModelsResponse"]
ModelMetadata = ANSWERS["ModelMetadataResponse"]


def _zero(field: FieldDescriptor) -> Any:
    """The proto3 zero value of ``field`` in JSON: what a request that leaves it out means."""
    if field.is_repeated:
        return []
    if absent_when_unset(field):
        return None
    return json_names(field.enum_type)[0] if field.enum_type is not None else field.default_value


def _request_fields(names: tuple[str, ...], descriptor: Descriptor = pb.InferRequest.DESCRIPTOR) -> dict[str, Any]:
    """The fields ``names`` of a request message (``InferRequest``), as they are, each defaulting to its zero value."""
    models = json_models([descriptor])
    found = {}
    for name in names:
        field = descriptor.fields_by_name[name]
        annotation, spec = json_field(field, models)
        found[name] = (annotation, Field(_zero(field), description=spec.description))
    return found


PLAN_FIELDS: dict[str, Any] = {
    "threshold": (float | None, Field(None, description=DOCS.get("splitexit.v1.Plan.threshold"))),
    "policy": (str, Field("", description="a device policy by name (splitee, dimee, ...); empty: the model's default")),
}
InferQuery = create_model("InferQuery", **_request_fields(IN_QUERY), **PLAN_FIELDS)
InferQuery.__doc__ = "The query parameters of ``POST /v1/infer`` with a raw body (image or text)."
InferJSON = create_model(
    "InferJSON",
    __config__=STRICT,
    image_base64=(str, Field("", description="the encoded image (PNG, JPEG, ...), base64; a data: URL also works")),
    text=(str | None, Field(None, description="text for a text model, instead of an image")),
    **_request_fields(AS_IS),
    **PLAN_FIELDS,
)
InferJSON.__doc__ = "The JSON form of ``POST /v1/infer``."
InferBatchJSON = create_model(
    "InferBatchJSON",
    __config__=STRICT,
    images_base64=(list[str], Field([], description="N encoded images (PNG, JPEG, ...), each base64 or a data: URL")),
    texts=(list[str] | None, Field(None, description="N texts for a text model, instead of images")),
    **_request_fields(BATCH_AS_IS, pb.InferBatchRequest.DESCRIPTOR),
    **PLAN_FIELDS,
)
InferBatchJSON.__doc__ = "The body of ``POST /v1/infer/batch``: N samples of one model with shared options."


class Health(BaseModel):
    model_config = STRICT

    status: Literal["SERVING", "NOT_SERVING"]
    next_tier: Literal["SERVING", "NOT_SERVING", "UNKNOWN"]


class Problem(BaseModel):
    """An RFC 9457 problem: the HTTP status, the gRPC status name as ``code`` and ``title``, and the message."""

    model_config = STRICT

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
