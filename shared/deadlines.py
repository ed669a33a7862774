"""Every request has a deadline, and the deadline travels with the sample.

A request's deadline is the sooner of what the caller asked for -- the gRPC
deadline of a unary call, the ``timeout_s`` of a message (streams, HTTP,
tier-to-tier requests) -- and, if it asked for nothing, the tier's
``default_timeout_s``. The request pipeline (:mod:`splitexit.shared.pipeline`)
merges them with :func:`deadline_for` and enforces a unary call's gRPC deadline;
the serving interceptor hands the result to a unary handler in
:data:`CALL_DEADLINE`. A tier passes the next one what is left of the budget,
minus :data:`ANSWER_RESERVE_S`, so that a tier that cannot get an answer
downstream in time still has time to answer from its own exit.
"""

from __future__ import annotations

import math
import time
from contextvars import ContextVar
from dataclasses import dataclass

from splitexit.shared.errors import DeadlineExceeded, InvalidInput

MAX_TIMEOUT_S = 3600.0
# What a tier keeps back from the time it gives the next one: enough to build and return its own answer.
ANSWER_RESERVE_S = 0.025


@dataclass(frozen=True)
class Deadline:
    """A point in time (``time.monotonic()``) by which a request must be answered."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def check(self, what: str) -> None:
        """Raise DEADLINE_EXCEEDED if the deadline has passed, saying what could not be done in time."""
        late = -self.remaining()
        if late >= 0:
            raise DeadlineExceeded(f"the request's deadline passed {late * 1e3:.0f} ms before {what}")


# The deadline of the unary call being served (its message's and its gRPC one merged), set by the serving
# interceptor from the pipeline; None for a call that runs no blocks and whose caller set no gRPC deadline.
CALL_DEADLINE: ContextVar[Deadline | None] = ContextVar("splitexit_call_deadline", default=None)


def checked_timeout(seconds: float, what: str) -> float:
    """``seconds`` if it is a usable timeout; else INVALID_ARGUMENT naming ``what``."""
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TIMEOUT_S:
        raise InvalidInput(f"{what} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {seconds!r}")
    return seconds


def deadline_for(timeout_s: float | None, inherited: Deadline | None, default_s: float) -> Deadline:
    """The sooner of ``timeout_s`` (checked) and ``inherited``; ``default_s`` from now if neither is set."""
    own = Deadline.after(checked_timeout(timeout_s, "timeout_s")) if timeout_s is not None else None
    chosen = [deadline for deadline in (own, inherited) if deadline is not None]
    return min(chosen, key=lambda deadline: deadline.at) if chosen else Deadline.after(default_s)
