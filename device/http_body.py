"""Reading a request's body for the device's HTTP gateway: size limits, JSON, base64, and the 4xx they raise.

Every refusal is an :class:`HttpError` with its own status and a message a person can act on; a body is
refused with 413 as soon as it is known to be over its limit, before it is all read.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

import grpc
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from splitexit.shared.errors import ServingError

Code = grpc.StatusCode
JsonBody = TypeVar("JsonBody", bound=BaseModel)


class HttpError(ServingError):
    """An error of the HTTP layer itself, with its own status."""

    def __init__(self, status: int, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def validation_message(errors: Any) -> str:
    """Pydantic's error list as one readable line: ``top_k: Input should be ...``."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts) or "the request is malformed"


def too_large(size: str, limit: int, what: str) -> HttpError:
    setting = "MAX_TEXT_BYTES" if what == "text" else "MAX_IMAGE_BYTES"
    return HttpError(
        413,
        Code.RESOURCE_EXHAUSTED,
        f"the {what} is {size}; the device accepts at most {limit:,} bytes (SPLITEXIT_DEVICE_{setting})",
    )


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, Code.INVALID_ARGUMENT, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise too_large(f"{int(declared):,} bytes", limit, what)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(f"over {limit:,} bytes", limit, what)
    return bytes(body)


def decode_base64(text: str, what: str = "image_base64") -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HttpError(400, Code.INVALID_ARGUMENT, f"{what} is not valid base64: {exc}") from None


def media_type_of(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' if none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


async def json_body(request: Request, limit: int, model: type[JsonBody]) -> JsonBody:
    """The body (at most ``limit`` bytes) validated as ``model``; a 400 naming what is wrong otherwise."""
    body = await read_body(request, limit, "JSON body")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise HttpError(400, Code.INVALID_ARGUMENT, f"bad JSON body: {validation_message(exc.errors())}") from None
