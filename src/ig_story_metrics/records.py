"""The snapshot row: one story at one moment. The only definition of the stored columns.

`COLUMNS` is the contract of DESIGN.md; the Polars schema and the JSON schema file are both derived
from it. `parse_insights()` turns an insights payload (both the `values[0].value` and `total_value`
shapes, breakdowns in any case) into column values; `snapshot_row()` assembles a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

Kind = Literal["str", "int", "float", "datetime"]

STORY_LIFETIME = timedelta(hours=24)

# Plain metrics, asked in one call. `reposts` exists since Dec 2025 on every version.
PLAIN_METRICS: tuple[str, ...] = (
    "views",
    "reach",
    "replies",
    "shares",
    "total_interactions",
    "follows",
    "profile_visits",
    "reposts",
)
# Breakdown metrics need a call each: breakdown dimension -> {API value (lower case): column}.
NAVIGATION_PARTS: dict[str, str] = {
    "tap_forward": "taps_forward",
    "tap_back": "taps_back",
    "tap_exit": "taps_exit",
    "swipe_forward": "swipe_forward",
}
PROFILE_ACTIVITY_PARTS: dict[str, str] = {
    part: f"profile_activity_{part}"
    for part in ("bio_link_clicked", "call", "direction", "email", "other", "text")
}
BREAKDOWNS: dict[str, tuple[str, dict[str, str]]] = {
    "navigation": ("story_navigation_action_type", NAVIGATION_PARTS),
    "profile_activity": ("action_type", PROFILE_ACTIVITY_PARTS),
}
METRIC_COLUMNS: tuple[str, ...] = (
    *PLAIN_METRICS,
    "navigation",
    *NAVIGATION_PARTS.values(),
    "profile_activity",
    *PROFILE_ACTIVITY_PARTS.values(),
)

InsightsStatus = Literal["ok", "partial", "not_enough_viewers", "expired", "unavailable", "error"]
STATUSES: tuple[str, ...] = (
    "ok",
    "partial",
    "not_enough_viewers",
    "expired",
    "unavailable",
    "error",
)


@dataclass(frozen=True, slots=True)
class Column:
    """One stored column."""

    name: str
    kind: Kind
    nullable: bool
    description: str


def _metric_column(name: str) -> Column:
    if name in NAVIGATION_PARTS.values():
        text = "navigation actions of this kind (the four parts add up to navigation)"
    elif name.startswith("profile_activity_"):
        text = "profile actions of this kind after engaging with the story"
    else:
        text = f"lifetime-to-date `{name}` insight"
    return Column(name, "int", True, f"{text}; null when not available, never a stand-in zero")


COLUMNS: tuple[Column, ...] = (
    Column("account", "str", False, "short account name from the accounts file, e.g. NPI"),
    Column("ig_user_id", "str", False, "Instagram professional account id"),
    Column("story_id", "str", False, "IG media id of the story"),
    Column("media_type", "str", True, "IMAGE or VIDEO"),
    Column("media_product_type", "str", True, "STORY"),
    Column("permalink", "str", True, "link to the story"),
    Column("caption", "str", True, "the story's caption, if any"),
    Column("posted_at", "datetime", False, "when the story was posted (UTC)"),
    Column("expires_at", "datetime", False, "posted_at + 24 h (UTC)"),
    Column(
        "fetched_at", "datetime", False, "when this snapshot was taken; one value per run (UTC)"
    ),
    Column("story_age_hours", "float", False, "fetched_at - posted_at, in hours"),
    *(_metric_column(name) for name in METRIC_COLUMNS),
    Column("insights_status", "str", False, "one of: " + ", ".join(STATUSES)),
    Column("insights_error", "str", True, "the Graph error message when the status is not ok"),
    Column("run_id", "str", False, "id of the run that took the snapshot"),
    Column("api_version", "str", False, "Graph API version, e.g. v25.0"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

_POLARS: dict[Kind, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "datetime": pl.Datetime("us", "UTC"),
}
_JSON: dict[Kind, dict[str, str]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "datetime": {"type": "string", "format": "date-time"},
}

POLARS_SCHEMA = pl.Schema({c.name: _POLARS[c.kind] for c in COLUMNS})


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one row, written beside every daily Parquet file."""
    properties: dict[str, Any] = {}
    for col in COLUMNS:
        spec: dict[str, Any] = dict(_JSON[col.kind])
        if col.nullable:
            spec["type"] = [spec["type"], "null"]
        properties[col.name] = {
            **spec,
            "description": col.description,
            "x-parquet-type": str(_POLARS[col.kind]),
        }
    properties["insights_status"]["enum"] = list(STATUSES)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "instagram_story_metrics",
        "description": "One Instagram story insights snapshot per row (one story at one moment).",
        "type": "object",
        "properties": properties,
        "required": [c.name for c in COLUMNS if not c.nullable],
        "additionalProperties": False,
    }


def to_frame(rows: Iterable[Mapping[str, object]]) -> pl.DataFrame:
    """Rows (dicts keyed by column name) as a DataFrame with exactly the stored schema."""
    return pl.DataFrame(list(rows), schema=POLARS_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame read back from storage, cast to the current schema (new nullable columns added)."""
    missing = [
        pl.lit(None, dtype=POLARS_SCHEMA[name]).alias(name)
        for name in COLUMN_NAMES
        if name not in frame.columns
    ]
    return frame.with_columns(missing).select(
        pl.col(name).cast(POLARS_SCHEMA[name]) for name in COLUMN_NAMES
    )


# ---------------------------------------------------------------------------------------------------
# Insights payload -> column values


def _first_value(item: Mapping[str, Any]) -> int | None:
    values = item.get("values")
    if isinstance(values, list) and values and isinstance(values[0], dict):
        value = _as_int(values[0].get("value"))
        if value is not None:
            return value
    total = item.get("total_value")
    if isinstance(total, dict):
        return _as_int(total.get("value"))
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
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
            value = _as_int(result.get("value"))
            if not isinstance(dims, list) or len(dims) <= at or value is None:
                continue
            column = parts.get(str(dims[at]).lower())
            if column is not None:
                found[column] += value
    return found


def parse_insights(payload: object) -> dict[str, int | None]:
    """Column values found in one insights payload; metrics it does not carry are absent.

    Unknown metrics (Meta adds new ones) are ignored; a malformed element is skipped, never a crash.
    """
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


# ---------------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class Story:
    """A live story as listed by `GET /{ig-user-id}/stories`."""

    id: str
    posted_at: datetime
    media_type: str | None = None
    media_product_type: str | None = None
    permalink: str | None = None
    caption: str | None = None

    @property
    def expires_at(self) -> datetime:
        return self.posted_at + STORY_LIFETIME


def parse_timestamp(value: str) -> datetime:
    """Graph timestamps look like `2026-09-20T08:15:02+0000`; always returned in UTC."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def snapshot_row(
    *,
    account: str,
    ig_user_id: str,
    story: Story,
    fetched_at: datetime,
    run_id: str,
    api_version: str,
    metrics: Mapping[str, int | None],
    status: InsightsStatus,
    error: str | None = None,
) -> dict[str, object]:
    """One row of the stored table; metric columns not in `metrics` are null."""
    age = (fetched_at - story.posted_at).total_seconds() / 3600
    row: dict[str, object] = {
        "account": account,
        "ig_user_id": ig_user_id,
        "story_id": story.id,
        "media_type": story.media_type,
        "media_product_type": story.media_product_type,
        "permalink": story.permalink,
        "caption": story.caption,
        "posted_at": story.posted_at,
        "expires_at": story.expires_at,
        "fetched_at": fetched_at,
        "story_age_hours": round(age, 4),
    }
    row.update({name: metrics.get(name) for name in METRIC_COLUMNS})
    row.update(insights_status=status, insights_error=error, run_id=run_id, api_version=api_version)
    return row


def metric_requests() -> Sequence[tuple[tuple[str, ...], str | None]]:
    """The insights calls one story needs: (metrics, breakdown) per call."""
    return (
        (PLAIN_METRICS, None),
        *(((name,), dimension) for name, (dimension, _) in BREAKDOWNS.items()),
    )
