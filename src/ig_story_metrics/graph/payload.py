"""Insights payload -> column values, for every shape Meta has been seen to send.

- plain metrics as `values[0].value` or `total_value.value`;
- breakdown metrics: the parts from `total_value.breakdowns[].results[]`, matched in any case, found
  by `dimension_keys` or, when a breakdown has none, as a single-dimension breakdown;
  - a part that a present breakdown leaves out is 0 (Meta leaves out zero rows);
  - no breakdown at all: the parts are null, unless the total is 0;
  - no total (no `value`, no `values[0]`): the total is the sum of the parts;
- a value is a count: a string ("123"), a fraction, a negative number or one beyond 64 bits is not
  read (None), never guessed.

Unknown metrics (Meta adds new ones) are ignored; a malformed element is skipped, never a crash.
What a payload does not carry is absent from the result: `outcome.py` names it as not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ig_story_metrics.model.metrics import BREAKDOWNS, EXTRA_METRICS, PLAIN_METRICS
from ig_story_metrics.model.numbers import INT64_MAX, as_count

_MISSING = object()


def _total_field(item: Mapping[str, Any]) -> object:
    """The raw total: a readable `values[0].value`, else `total_value.value`, else whichever is
    there; `_MISSING` when the item carries neither."""
    values = item.get("values")
    first: object = _MISSING
    if isinstance(values, list) and values and isinstance(values[0], dict):
        first = values[0].get("value", _MISSING)
    if first is not _MISSING and as_count(first) is not None:
        return first  # the common case: one look, no list
    total = item.get("total_value")
    second = total.get("value", _MISSING) if isinstance(total, dict) else _MISSING
    if second is not _MISSING and (first is _MISSING or as_count(second) is not None):
        return second
    return first


def _value(item: Mapping[str, Any]) -> int | None:
    raw = _total_field(item)
    return None if raw is _MISSING else as_count(raw)


def _plain(item: Mapping[str, Any]) -> int | None:
    """`_value` of a plain metric, its common shape (`values: [{"value": <count>}]`) read at once:
    a readable first value is what `_total_field` gives then."""
    values = item.get("values")
    if type(values) is list and values and type(values[0]) is dict:
        first = values[0].get("value")
        if type(first) is int and 0 <= first <= INT64_MAX:
            return first
    return _value(item)


def _dimension_index(breakdown: Mapping[str, Any], dimension: str) -> int | None:
    """Where `dimension` sits in this breakdown's dimension values (0 when it names none)."""
    keys = breakdown.get("dimension_keys")
    if keys is None or keys == []:
        return 0  # a single-dimension breakdown that does not say which: ours (its metric's)
    if not isinstance(keys, list):
        return None
    lowered = [str(k).lower() for k in keys]
    return lowered.index(dimension) if dimension in lowered else None


def _parts(
    item: Mapping[str, Any], dimension: str, parts: Mapping[str, str]
) -> tuple[dict[str, int | None], int | None] | None:
    """(parts by column, sum of every result) of the breakdown by `dimension`; None when the item
    carries no such breakdown. An unreadable result makes its part and the sum None."""
    total = item.get("total_value")
    breakdowns = total.get("breakdowns") if isinstance(total, dict) else None
    found: dict[str, int | None] = dict.fromkeys(parts.values(), 0)
    everything: int | None = 0
    matched = False
    for breakdown in breakdowns if isinstance(breakdowns, list) else []:
        at = _dimension_index(breakdown, dimension) if isinstance(breakdown, dict) else None
        results = breakdown.get("results") if isinstance(breakdown, dict) else None
        if at is None or not isinstance(results, list):
            continue
        unnamed = "dimension_keys" not in breakdown or not breakdown["dimension_keys"]
        matched = True
        for result in results:
            dims = result.get("dimension_values") if isinstance(result, dict) else None
            if not isinstance(dims, list) or len(dims) <= at or (unnamed and len(dims) != 1):
                continue
            column = parts.get(str(dims[at]).lower())
            value = as_count(result.get("value"))
            if column is not None:
                known = found[column]
                found[column] = None if value is None or known is None else known + value
            everything = None if value is None or everything is None else everything + value
    return (found, everything) if matched else None


def _breakdown_metric(item: Mapping[str, Any], name: str) -> dict[str, int | None]:
    dimension, parts = BREAKDOWNS[name]
    total = _value(item)
    read = _parts(item, dimension, parts)
    if read is None:  # no breakdown: the parts are unknown, unless there is nothing to split
        return {name: total, **dict.fromkeys(parts.values(), 0 if total == 0 else None)}
    found, everything = read
    if _total_field(item) is _MISSING:  # a breakdown without its total
        total = everything
    return {name: total, **found}


def parse_insights(payload: object) -> dict[str, int | None]:
    """Column values found in one insights payload; metrics it does not carry are absent."""
    out: dict[str, int | None] = {}
    data = payload.get("data") if isinstance(payload, dict) else None
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name = item["name"]
        if name in PLAIN_METRICS or name in EXTRA_METRICS:
            out[name] = _plain(item)
        elif name in BREAKDOWNS:
            out.update(_breakdown_metric(item, name))
    return out
