"""Bounded work: a tier, or one stream, takes at most so many requests at once.

One more is refused at once with RESOURCE_EXHAUSTED and a message naming the
setting, never queued: a queue that grows under overload only turns answers
into timeouts and memory into a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from splitexit.shared.errors import Overloaded


class InFlightLimit:
    """At most ``limit`` requests in flight; :meth:`admit` refuses the next one."""

    def __init__(self, limit: int, holder: str, setting: str) -> None:
        self.limit = limit
        self.holder = holder  # e.g. "the device", for messages
        self.setting = setting  # the setting that raises the limit, for messages
        self.in_flight = 0

    def try_acquire(self) -> None:
        """Take a slot, or raise :class:`Overloaded` if all are taken."""
        if self.in_flight >= self.limit:
            raise self.refusal()
        self.in_flight += 1

    def acquire_up_to(self, count: int) -> int:
        """Take as many of ``count`` slots as are free; how many were taken."""
        taken = max(min(count, self.limit - self.in_flight), 0)
        self.in_flight += taken
        return taken

    def refusal(self) -> Overloaded:
        """The error of a request refused because every slot is taken."""
        return Overloaded(
            f"{self.holder} has {self.in_flight} requests in flight, its limit ({self.setting}); "
            "retry later or send fewer at once"
        )

    def release(self, count: int = 1) -> None:
        self.in_flight -= count

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """One slot for the body of the ``with``."""
        self.try_acquire()
        try:
            yield
        finally:
            self.release()
