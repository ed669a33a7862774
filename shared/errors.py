"""Errors a tier raises on purpose, each with the gRPC status a client sees.

The serving interceptor (:mod:`splitexit.shared.interceptors`) turns these into
``context.abort(code, message)``, and a stream into a ``StreamError`` message;
anything else is a bug and becomes INTERNAL with a short message, never a
stack trace (:func:`as_serving_error`).
"""

from __future__ import annotations

import logging

import grpc

from splitexit.shared.proto import splitexit_pb2 as pb

log = logging.getLogger(__name__)


class ServingError(Exception):
    """Base class: a message a person can act on, and the status code it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    """The request is malformed: bad image, wrong tensor dtype/shape, empty or huge payload."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class InputTooLarge(ServingError):
    """An input over the tier's size limit (the proto's RESOURCE_EXHAUSTED, HTTP 413)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ServingError):
    """The caller sent no bearer token, or one the device does not accept (HTTP 401)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class UnknownModel(ServingError):
    """The request names a model this tier does not serve."""

    code = grpc.StatusCode.NOT_FOUND


class OutOfRange(ServingError):
    """The request asks a tier to resume at a block outside the range it hosts."""

    code = grpc.StatusCode.OUT_OF_RANGE


class LinkFailure(ServingError):
    """The sample must travel on, but the next tier cannot answer it; a tier may answer degraded instead."""

    reason: pb.DegradedReason.ValueType = pb.DEGRADED_REASON_UNSPECIFIED


class NextTierUnavailable(LinkFailure):
    """The next tier cannot be reached, or it is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = pb.DEGRADED_REASON_NEXT_TIER_UNREACHABLE


class NextTierOverloaded(LinkFailure):
    """The next tier refused the sample: too many requests in flight there."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = pb.DEGRADED_REASON_NEXT_TIER_OVERLOADED


class NextTierTooSlow(LinkFailure):
    """The next tier did not answer within the time the request had left."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = pb.DEGRADED_REASON_NEXT_TIER_TOO_SLOW


class DeadlineExceeded(ServingError):
    """The request's deadline passed (waiting for a worker, or for the next tier)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Overloaded(ServingError):
    """Too many requests are in flight on this tier, this stream or this link."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ShuttingDown(ServingError):
    """The tier is draining: it answers what it accepted and takes nothing new."""

    code = grpc.StatusCode.UNAVAILABLE


class RemoteError(ServingError):
    """The next tier answered with an error status; passed back to the client as is."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def remote_failure(code: grpc.StatusCode, message: str) -> ServingError:
    """What an error status from the next tier means here: a :class:`LinkFailure` if answering degraded may help."""
    failure = {
        grpc.StatusCode.UNAVAILABLE: NextTierUnavailable,
        grpc.StatusCode.RESOURCE_EXHAUSTED: NextTierOverloaded,
        grpc.StatusCode.DEADLINE_EXCEEDED: NextTierTooSlow,
    }.get(code)
    return failure(message) if failure is not None else RemoteError(code, message)


def status_from_number(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` whose wire number is ``number`` (UNKNOWN if none)."""
    return next((code for code in grpc.StatusCode if code.value[0] == number), grpc.StatusCode.UNKNOWN)


def as_serving_error(exc: BaseException, where: str) -> ServingError:
    """``exc`` itself if it is a :class:`ServingError`; else log it (a bug) and give the one-line INTERNAL error."""
    if isinstance(exc, ServingError):
        return exc
    log.error("unexpected error in the %s", where, exc_info=exc)
    return ServingError(f"internal error in the {where} ({type(exc).__name__}); see its log")
