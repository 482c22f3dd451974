"""Time: the wall clock a run reads (`Clock`), and its time budget (`Deadline`).

Everything that asks "what time is it" takes a `Clock` (a zero-argument callable returning an aware
UTC datetime), so tests and the simulated day can run on a clock of their own. `Deadline` measures
the run's budget on a monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
MAX_REPLAY_HOURS = 72  # the longest replay on a virtual clock (`demo --hours`, jobs/day.py)


def utc_now() -> datetime:
    """The real current time, in UTC."""
    return datetime.now(UTC)


class VirtualClock:
    """A clock that stands still until told to move: the simulated day's shared time.

    Call it like `utc_now`; the simulator's world and the jobs read the same instance, so both agree
    on "now" to the microsecond. `set` and `advance` only move forward (a replay never goes back).
    Reading and moving are safe from several threads (one attribute, replaced whole).
    """

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def __call__(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        moment = _aware(moment)
        if moment < self._now:
            raise ValueError(f"a virtual clock does not go back ({moment} < {self._now})")
        self._now = moment

    def advance(self, step: timedelta) -> None:
        self.set(self._now + step)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a virtual clock keeps aware UTC datetimes")
    return moment.astimezone(UTC)


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
