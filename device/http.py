"""The device's plain-HTTP gateway: the same ``Device.Infer``, for curl and browsers.

Served by uvicorn inside the device process, in the gRPC server's event loop
(:mod:`splitexit.device.http_server`), on
``SPLITEXIT_DEVICE_HOST:SPLITEXIT_DEVICE_HTTP_PORT`` (default 8080; 0 turns it off). It starts and stops with the
gRPC server. A request becomes the same
``InferRequest`` a gRPC client would send and goes through the same request
pipeline (:mod:`splitexit.shared.pipeline`) to the same :meth:`DeviceServicer.infer`
as gRPC does, so the checks, the answers and the error messages are those of gRPC.

``POST /v1/infer`` takes either the raw image bytes::

    curl -s --data-binary @shirt.png -H 'Content-Type: image/png' \\
        'http://127.0.0.1:8080/v1/infer?threshold=0.9&top_k=3'

(``image/*`` or ``application/octet-stream``; optional query parameters
``model``, ``threshold`` in [0, 1] -- 0 exits at the first exit, 1 runs every
block --, ``policy`` -- a device policy by name, e.g. ``splitee`` --, ``top_k``), or raw UTF-8 text for a text
model (``text/plain``, the
same query parameters plus ``truncate=true`` to cut text over the model's token
limit instead of refusing it), or JSON with the same fields and either the
image in base64 or the text::

    curl -s http://127.0.0.1:8080/v1/infer -H 'Content-Type: application/json' \\
        -d "{\\"image_base64\\": \\"$(base64 -w0 shirt.png)\\", \\"threshold\\": 0.9}"
    curl -s http://127.0.0.1:8080/v1/infer -H 'Content-Type: application/json' \\
        -d '{"model": "minilm-sentiment", "text": "A wonderful, moving film."}'

The answer is the ``InferResponse`` message in the proto3 JSON mapping, as gRPC
JSON tools and Node clients see it (proto field names, every field present even
when zero, 64-bit integers as numbers, enums by name: ``"exit_tier": "EDGE"``;
schema: :mod:`splitexit.device.http_models`)::

    {"request_id": "...", "model": "fmnist-cnn", "label": 6, "label_name": "Shirt",
     "confidence": 0.93, "top_k": [{"label": 6, "label_name": "Shirt", "probability": 0.93}, ...],
     "exit_tier": "EDGE", "exit_block": 3, "hops": [{"tier": "DEVICE", ...}, ...], ...}

Errors are RFC 9457 problem details (``application/problem+json``)::

    {"type": "about:blank", "title": "INVALID_ARGUMENT", "status": 400, "code": "INVALID_ARGUMENT",
     "detail": "the 16 bytes sent are not an image in a format Pillow reads (PNG, JPEG, ...)"}

with the gRPC status name and message, never a stack trace, mapped as gRPC maps
them: INVALID_ARGUMENT and OUT_OF_RANGE -> 400 (also bad JSON, bad base64, bad
query parameters), NOT_FOUND -> 404 (unknown model), RESOURCE_EXHAUSTED -> 413
for an input over ``max_image_bytes`` or ``max_text_bytes`` (raw bodies are
refused from their Content-Length before they are read; gRPC answers the same
input RESOURCE_EXHAUSTED too) and 429 for too many requests in flight,
UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504, anything else -> 500. An
unsupported Content-Type is 415. Every request has a deadline (``timeout_s``,
else the device's ``default_timeout_s``); an answer given from an earlier exit
because the next tier could not be used says ``"degraded": true`` and why,
unless ``forbid_degraded`` asks for 503/504 instead.

``POST /v1/infer/batch`` is ``Device.InferBatch`` as JSON: ``images_base64`` or ``texts`` (lists) and the
options of ``/v1/infer``, shared by every sample, plus ``request_ids``; the answer is ``InferBatchResponse``,
whose ``errors`` name each sample without an answer; a batch wrong as a whole is a problem (400, 404, 413).

``GET /healthz`` answers 200 ``{"status": "SERVING", "next_tier": "SERVING"}`` while
the device serves (503 from the moment it starts draining, while it still answers
requests); ``next_tier`` says whether the edge reports SERVING (a device whose edge
is down still answers, degraded); ``GET /v1/models`` is ``Device.ListModels`` and
``GET /v1/models/{name}`` ``Device.ModelMetadata`` as JSON (input, preprocessing, labels,
exits, hosted ranges, policies). ``GET /`` is a page to try the models
(:mod:`splitexit.device.http_page`); ``GET /openapi.json`` the spec. There is no
``/docs`` or ``/redoc``: FastAPI's load their scripts from a CDN and render blank offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import grpc
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from google.protobuf.json_format import ParseDict
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from splitexit.device.auth import Tokens
from splitexit.device.discovery import list_models, model_metadata
from splitexit.device.http_body import (
    HttpError,
    decode_base64,
    is_json,
    json_body,
    media_type_of,
    read_body,
    too_large,
    validation_message,
)
from splitexit.device.http_models import (
    AS_IS,
    BATCH_AS_IS,
    Answer,
    BatchAnswer,
    Health,
    InferBatchJSON,
    InferJSON,
    InferQuery,
    ModelList,
    ModelMetadata,
    error_response,
    problem_responses,
    without_422,
)
from splitexit.device.http_page import add_page_routes
from splitexit.device.servicer import DeviceServicer
from splitexit.device.settings import DeviceSettings
from splitexit.policies.plan import override
from splitexit.results import message_json
from splitexit.shared.errors import InputTooLarge, ServingError, as_serving_error
from splitexit.shared.proto import splitexit_pb2 as pb

Code = grpc.StatusCode
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.OUT_OF_RANGE: 400,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 429,  # too many in flight; an input over the limit is 413 (InputTooLarge, HttpError)
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
}
CODE_OF_HTTP = {400: Code.INVALID_ARGUMENT, 404: Code.NOT_FOUND, 405: Code.UNIMPLEMENTED, 413: Code.RESOURCE_EXHAUSTED}


def _serving_error_response(error: ServingError) -> JSONResponse:
    if isinstance(error, HttpError):
        status = error.status
    else:
        status = 413 if isinstance(error, InputTooLarge) else HTTP_STATUS.get(error.code, 500)
    response = error_response(status, error.code, error.message)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _infer_request(request: Request, settings: DeviceSettings, query: BaseModel) -> pb.InferRequest:
    """Either form of ``POST /v1/infer`` as the ``InferRequest`` a gRPC client would send."""
    media_type = media_type_of(request)
    if is_json(media_type):
        if request.query_params:
            raise HttpError(
                400,
                Code.INVALID_ARGUMENT,
                "with a JSON body, send model, threshold, policy and top_k in it, not in the query",
            )
        # the base64 of the largest image, or the largest text with every character \u-escaped, and the rest
        limit = max(4 * -(-settings.max_image_bytes // 3), 6 * settings.max_text_bytes) + 4096
        fields = await json_body(request, limit, InferJSON)
        if fields.text is not None:
            if fields.image_base64:
                raise HttpError(400, Code.INVALID_ARGUMENT, "send either image_base64 or text, not both")
            return _message(fields, text=fields.text.encode("utf-8"))  # lone surrogates fail JSON validation
        if not fields.image_base64:
            raise HttpError(400, Code.INVALID_ARGUMENT, "the JSON body needs image_base64 (an image) or text")
        image = decode_base64(fields.image_base64)
        if len(image) > settings.max_image_bytes:
            raise too_large(f"{len(image):,} bytes", settings.max_image_bytes, "image in image_base64")
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        image = await read_body(request, settings.max_image_bytes, "image")
        fields = query
    elif media_type == "text/plain":
        return _message(query, text=await read_body(request, settings.max_text_bytes, "text"))
    else:
        raise HttpError(
            415,
            Code.INVALID_ARGUMENT,
            f"unsupported Content-Type {media_type or '(none)'!r}: send the image bytes as image/* or "
            'application/octet-stream, UTF-8 text as text/plain, or JSON {"image_base64": ...} or '
            '{"text": ...} as application/json',
        )
    return _message(fields, image=image)


async def _batch_request(request: Request, settings: DeviceSettings) -> pb.InferBatchRequest:
    """The JSON body of ``POST /v1/infer/batch`` as the ``InferBatchRequest`` a gRPC client would send."""
    media_type = media_type_of(request)
    if not is_json(media_type):
        raise HttpError(
            415, Code.INVALID_ARGUMENT, f"send the batch as application/json, not {media_type or '(none)'!r}"
        )
    fields = await json_body(request, 2 * settings.max_message_bytes, InferBatchJSON)
    if fields.texts is not None and fields.images_base64:
        raise HttpError(400, Code.INVALID_ARGUMENT, "send either images_base64 or texts, not both")
    message = ParseDict(fields.model_dump(include=set(BATCH_AS_IS), exclude_none=True), pb.InferBatchRequest())
    message.texts.extend(text.encode("utf-8") for text in fields.texts or ())
    message.images.extend(decode_base64(b, f"images_base64[{i}]") for i, b in enumerate(fields.images_base64))
    plan = override(fields.threshold, fields.policy)
    if plan is not None:
        message.policy.CopyFrom(plan)
    return message


def _message(fields: Any, **input_field: bytes) -> pb.InferRequest:
    """The ``InferRequest`` for ``fields`` (an ``InferJSON`` or ``InferQuery``) and its ``image=`` or ``text=``."""
    given = fields.model_dump(include=set(AS_IS), exclude_none=True)
    message = ParseDict(given, pb.InferRequest(**input_field))
    plan = override(fields.threshold, fields.policy)
    if plan is not None:
        message.policy.CopyFrom(plan)
    return message


def create_app(servicer: DeviceServicer, settings: DeviceSettings, tokens: Tokens) -> FastAPI:
    """The gateway's routes over a device's servicer (and through it, its node); ``/v1`` wants one of ``tokens``."""
    app = FastAPI(
        title="splitexit device",
        summary="Early-exit inference across device, edge and cloud",
        docs_url=None,
        redoc_url=None,  # their scripts come from a CDN; the try-it page at / works offline
    )
    app.state.serving = True
    default_openapi = app.openapi
    app.openapi = lambda: app.openapi_schema or without_422(default_openapi())  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, Code.INVALID_ARGUMENT, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, CODE_OF_HTTP.get(exc.status_code, Code.UNKNOWN), str(exc.detail))

    @app.exception_handler(ServingError)
    async def serving_error(_: Request, exc: ServingError) -> JSONResponse:
        return _serving_error_response(exc)

    @app.exception_handler(ResponseValidationError)
    async def bad_answer(_: Request, exc: ResponseValidationError) -> JSONResponse:
        detail = f"the device's answer does not match its schema: {validation_message(exc.errors())}"
        return error_response(500, Code.INTERNAL, detail)

    guard = [Depends(_token_guard(tokens))]  # on every /v1 route
    _add_infer_route(app, servicer, settings, guard)
    _add_info_routes(app, servicer, settings, guard)
    add_page_routes(app)
    return app


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": InferJSON.model_json_schema()},
        },
    }
}


BATCH_SCHEMA = InferBatchJSON.model_json_schema()


def _token_guard(tokens: Tokens) -> Callable[[Request], None]:
    """A dependency that raises UNAUTHENTICATED (401) unless the request's Authorization carries a token."""

    def check(request: Request) -> None:
        tokens.check(request.headers.get("authorization"))

    return check


def _add_infer_route(app: FastAPI, servicer: DeviceServicer, settings: DeviceSettings, guard: list[Any]) -> None:
    @app.post(
        "/v1/infer",
        summary="Classify one image or one text",
        openapi_extra=INFER_BODY,
        response_model=Answer,
        response_model_exclude_unset=True,  # a field with presence is left out when unset, as in the proto3 JSON
        responses=problem_responses(400, 401, 404, 413, 415, 429, 500, 503, 504),
        dependencies=guard,
    )
    async def infer(request: Request, query: Annotated[InferQuery, Query()]) -> Any:
        try:
            message = await _infer_request(request, settings, query)
        except Exception as exc:  # noqa: BLE001 - a request HTTP cannot read is a status and one line
            raise as_serving_error(exc, "device's HTTP gateway") from None
        outcome = await servicer.node.pipeline.run("HTTP", message, servicer.infer)
        if isinstance(outcome, ServingError):
            raise outcome
        return message_json(outcome)

    @app.post(
        "/v1/infer/batch",
        summary="Classify N images or N texts of one model (Device.InferBatch)",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BATCH_SCHEMA}}}},
        response_model=BatchAnswer,
        response_model_exclude_unset=True,
        responses=problem_responses(400, 401, 404, 413, 415, 500, 503, 504),
        dependencies=guard,
    )
    async def infer_batch(request: Request) -> Any:
        try:
            message = await _batch_request(request, settings)
        except Exception as exc:  # noqa: BLE001 - as /v1/infer
            raise as_serving_error(exc, "device's HTTP gateway") from None
        answer = await servicer.node.pipeline.run("HTTP", message, servicer.infer_batch)
        if isinstance(answer, ServingError):
            raise answer
        return message_json(answer)


def _add_info_routes(app: FastAPI, servicer: DeviceServicer, settings: DeviceSettings, guard: list[Any]) -> None:
    @app.get(
        "/healthz",
        summary="200 while the device serves; next_tier says whether the edge is reachable",
        response_model=Health,
        responses={503: {"model": Health, "description": "the device is draining"}},
    )
    async def healthz(response: Response) -> dict[str, str]:
        link = servicer.node.link
        reachable = None if link is None else link.reachable
        if not app.state.serving:
            response.status_code = 503
        status = "SERVING" if app.state.serving else "NOT_SERVING"
        return {"status": status, "next_tier": {True: "SERVING", False: "NOT_SERVING", None: "UNKNOWN"}[reachable]}

    @app.get(
        "/v1/models",
        summary="The models this device serves (Device.ListModels)",
        response_model=ModelList,
        response_model_exclude_unset=True,
        responses=problem_responses(401),
        dependencies=guard,
    )
    async def models() -> Any:
        return message_json(list_models(list(servicer.node.registry), servicer.policies, settings.default_model))

    @app.get(
        "/v1/models/{name}",
        summary="One model's contract (Device.ModelMetadata)",
        response_model=ModelMetadata,
        response_model_exclude_unset=True,
        responses=problem_responses(401, 404),
        dependencies=guard,
    )
    async def model(name: str) -> Any:
        return message_json(model_metadata(servicer.node.registry.get(name), servicer.policies))
