"""Rate-limit manners: read the usage headers Meta sends and turn them into pauses.

`X-Business-Use-Case-Usage` is a JSON object keyed by business-object id, each an array of
`{type, call_count, total_cputime, total_time, estimated_time_to_regain_access}` (percentages, and
minutes until throttling lifts). `X-App-Usage` is the flat `{call_count, total_time, total_cputime}`.
Headers may be absent (absence is not 0 %), malformed, or repeated inside batch operations: every key
and every entry is read, and the largest figure wins.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

BUC_HEADER = "x-business-use-case-usage"
APP_HEADER = "x-app-usage"
_PERCENT_KEYS = ("call_count", "total_cputime", "total_time")


@dataclass(frozen=True, slots=True)
class Usage:
    """The worst usage seen in one response: the highest percentage and the longest regain time."""

    percent: float = 0.0
    regain_seconds: float = 0.0

    def worst(self, other: Usage) -> Usage:
        return Usage(
            max(self.percent, other.percent), max(self.regain_seconds, other.regain_seconds)
        )


def _number(value: object) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def _entry_usage(entry: object) -> Usage:
    if not isinstance(entry, Mapping):
        return Usage()
    percent = max((_number(entry.get(key)) for key in _PERCENT_KEYS), default=0.0)
    regain = _number(entry.get("estimated_time_to_regain_access")) * 60
    return Usage(percent, regain)


def parse_usage(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Usage:
    """The worst usage announced by a response's headers (names in any case)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    usage = Usage()
    for name, raw in items:
        lowered = name.lower()
        if lowered not in (BUC_HEADER, APP_HEADER):
            continue
        try:
            parsed = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if lowered == APP_HEADER:
            usage = usage.worst(_entry_usage(parsed))
            continue
        if not isinstance(parsed, Mapping):
            continue
        for entries in parsed.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                usage = usage.worst(_entry_usage(entry))
    return usage


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before trying again, and when to stop.

    Transient errors back off exponentially with jitter (half fixed, half random, so two accounts
    never retry in lock step); throttling waits what Meta announces in
    `estimated_time_to_regain_access`, or backs off when it says nothing. An account whose usage
    reaches `pause_percent` is paused before its next call, longer the closer it is to 100 %.
    """

    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    pause_percent: float = 80.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number `attempt` (1, 2, ...)."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** max(attempt - 1, 0))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def usage_pause(self, usage: Usage) -> float:
        """Seconds to hold off an account given its latest usage figures (0: go on)."""
        if usage.regain_seconds > 0:
            return usage.regain_seconds
        if usage.percent < self.pause_percent:
            return 0.0
        share = min((usage.percent - self.pause_percent) / max(100 - self.pause_percent, 1), 1)
        return max(self.base_seconds, self.max_seconds * share * share)


class Deadline:
    """The run's time budget (a Cloud Function has a deadline): how much of it is left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.ends = clock() + seconds

    def remaining(self) -> float:
        return max(self.ends - self._clock(), 0.0)

    def allows(self, seconds: float) -> bool:
        """Whether waiting `seconds` still leaves time to make the call after it."""
        return seconds < self.remaining()
