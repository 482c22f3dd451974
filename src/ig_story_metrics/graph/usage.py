"""Usage headers: what Meta says about how close an account is to its rate limits.

`X-Business-Use-Case-Usage` is a JSON object keyed by business-object id, each an array of
`{type, call_count, total_cputime, total_time, estimated_time_to_regain_access}` (percentages, and
minutes until throttling lifts). `X-App-Usage` is the flat `{call_count, total_time, total_cputime}`.
Headers may be absent (absence is not 0 %), malformed, or repeated inside batch operations: every key
and every entry is read, and the largest figure wins.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ig_story_metrics.graph.errors import parse_json
from ig_story_metrics.model.numbers import as_float

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


def _entry_usage(entry: object) -> Usage:
    if not isinstance(entry, Mapping):
        return Usage()
    percent = max(((as_float(entry.get(key)) or 0.0) for key in _PERCENT_KEYS), default=0.0)
    regain = (as_float(entry.get("estimated_time_to_regain_access")) or 0.0) * 60
    return Usage(percent, regain)


@functools.lru_cache(maxsize=4096)
def _usage_of(name: str, raw: str) -> Usage:
    """The usage one header announces (cached: a run sees the same few values many times, in
    every operation of every batch)."""
    parsed = parse_json(raw)
    if name == APP_HEADER:
        return _entry_usage(parsed)
    usage = Usage()
    if not isinstance(parsed, Mapping):
        return usage
    for entries in parsed.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            usage = usage.worst(_entry_usage(entry))
    return usage


def parse_usage(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Usage:
    """The worst usage announced by a response's headers (names in any case)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    usage = Usage()
    for name, raw in items:
        lowered = name.lower()
        if lowered in (BUC_HEADER, APP_HEADER) and isinstance(raw, str):
            usage = usage.worst(_usage_of(lowered, raw))
    return usage
