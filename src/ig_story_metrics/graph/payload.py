"""Insights payload -> column values.

Both the `values[0].value` and the `total_value` shapes; breakdowns in any case. Unknown metrics
(Meta adds new ones) are ignored; a malformed element is skipped, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ig_story_metrics.model.metrics import BREAKDOWNS, PLAIN_METRICS
from ig_story_metrics.model.numbers import as_int


def _first_value(item: Mapping[str, Any]) -> int | None:
    values = item.get("values")
    if isinstance(values, list) and values and isinstance(values[0], dict):
        value = as_int(values[0].get("value"))
        if value is not None:
            return value
    total = item.get("total_value")
    if isinstance(total, dict):
        return as_int(total.get("value"))
    return None


def _breakdown(item: Mapping[str, Any], dimension: str, parts: Mapping[str, str]) -> dict[str, int]:
    """Breakdown values by column; parts Meta leaves out while reporting the total count as 0."""
    found = dict.fromkeys(parts.values(), 0)
    total = item.get("total_value")
    breakdowns = total.get("breakdowns") if isinstance(total, dict) else None
    for breakdown in breakdowns if isinstance(breakdowns, list) else []:
        if not isinstance(breakdown, dict):
            continue
        keys = [str(k).lower() for k in breakdown.get("dimension_keys") or []]
        if dimension not in keys:
            continue
        at = keys.index(dimension)
        for result in breakdown.get("results") or []:
            if not isinstance(result, dict):
                continue
            dims = result.get("dimension_values")
            value = as_int(result.get("value"))
            if not isinstance(dims, list) or len(dims) <= at or value is None:
                continue
            column = parts.get(str(dims[at]).lower())
            if column is not None:
                found[column] += value
    return found


def parse_insights(payload: object) -> dict[str, int | None]:
    """Column values found in one insights payload; metrics it does not carry are absent."""
    out: dict[str, int | None] = {}
    data = payload.get("data") if isinstance(payload, dict) else None
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name = item["name"]
        if name in PLAIN_METRICS:
            out[name] = _first_value(item)
        elif name in BREAKDOWNS:
            total = _first_value(item)
            out[name] = total
            dimension, parts = BREAKDOWNS[name]
            if total is None:
                out.update(dict.fromkeys(parts.values()))
            else:
                out.update(_breakdown(item, dimension, parts))
    return out
