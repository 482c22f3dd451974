"""Time: the wall clock a run reads (`Clock`), and its time budget (`Deadline`).

Everything that asks "what time is it" takes a `Clock` (a zero-argument callable returning an aware
UTC datetime), so tests and the simulated day can run on a clock of their own. `Deadline` measures
the run's budget on a monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real current time, in UTC."""
    return datetime.now(UTC)


class Deadline:
    """The run's time budget (a Cloud Function has a deadline): how much of it is left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.ends = clock() + seconds

    def remaining(self) -> float:
        return max(self.ends - self._clock(), 0.0)

    def allows(self, seconds: float) -> bool:
        """Whether waiting `seconds` still leaves time to do something after it."""
        return seconds < self.remaining()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def share(self, fraction: float) -> Deadline:
        """A deadline ending when `fraction` of what is left now has passed (same clock)."""
        part = Deadline(0, self._clock)
        part.ends = self._clock() + self.remaining() * fraction
        return part
