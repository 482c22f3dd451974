"""The snapshot row: one story at one moment, and the `snapshots` table that holds them.

`SNAPSHOTS.columns` is the contract of DESIGN.md; the Polars schema and the JSON schema written beside
every daily file both derive from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ig_story_metrics.model.metrics import EXTRA_METRICS, METRIC_COLUMNS, NAVIGATION_PARTS
from ig_story_metrics.model.story import Story
from ig_story_metrics.model.table import Column, Table
from ig_story_metrics.redact import scrub

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

InsightsStatus = Literal["ok", "partial", "not_enough_viewers", "expired", "unavailable", "error"]
Capture = Literal["hourly", "sweep"]
CAPTURES: tuple[str, ...] = ("hourly", "sweep")
STATUSES: tuple[str, ...] = (
    "ok",
    "partial",
    "not_enough_viewers",
    "expired",
    "unavailable",
    "error",
)


def _metric_column(name: str) -> Column:
    if name in NAVIGATION_PARTS.values():
        text = "navigation actions of this kind (the four parts add up to navigation)"
    elif name.startswith("profile_activity_"):
        text = "profile actions of this kind after engaging with the story"
    elif name == "link_clicks":
        text = "taps on links in the story, such as link stickers (Facebook Login only)"
    elif name in EXTRA_METRICS:
        text = f"lifetime-to-date `{name}` insight, asked only when IG_EXTRA_METRICS names it"
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
    Column(
        "posted_at",
        "datetime",
        True,
        "when the story was posted (UTC); null only when the listing gave no valid timestamp "
        "(status error)",
    ),
    Column("expires_at", "datetime", True, "posted_at + 24 h (UTC); null when posted_at is"),
    Column(
        "fetched_at", "datetime", False, "when this snapshot was taken; one value per run (UTC)"
    ),
    Column(
        "story_age_hours", "float", True, "fetched_at - posted_at, in hours; null when posted_at is"
    ),
    *(_metric_column(name) for name in METRIC_COLUMNS),
    Column(
        "capture",
        "str",
        True,  # files written before this column read it as null: they are all hourly
        "the job that took the snapshot: hourly (every live story) or sweep (stories about to "
        "expire); null in files older than the column, which hold hourly snapshots",
        enum=CAPTURES,
    ),
    Column(
        "media_path",
        "str",
        True,
        "where the story's image or video is archived in the lake, e.g. "
        "Instagram/NPI/media/stories/2026-11-24/1801.jpg; null when it is not (yet), or in files "
        "older than the column",
    ),
    Column("insights_status", "str", False, "one of: " + ", ".join(STATUSES), enum=STATUSES),
    Column(
        "insights_error",
        "str",
        True,
        "why the status is not ok: Meta's message, the metrics or calls not read (never a token)",
    ),
    Column("run_id", "str", False, "id of the run that took the snapshot"),
    Column("api_version", "str", False, "Graph API version, e.g. v25.0"),
)

SNAPSHOTS = Table(
    name="snapshots",
    title="instagram_story_metrics",
    description="One Instagram story insights snapshot per row (one story at one moment).",
    columns=COLUMNS,
    partition_by=("account", "date"),
    disposition="append_by_run",
)
COLUMN_NAMES = SNAPSHOTS.column_names


def to_frame(rows: Iterable[Mapping[str, object]]) -> pl.DataFrame:
    """Snapshot rows as a DataFrame with exactly the stored schema."""
    return SNAPSHOTS.frame(rows)


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
    capture: Capture = "hourly",
    media_path: str | None = None,
) -> dict[str, object]:
    """One row of the stored table; metric columns not in `metrics` are null; the error text is
    scrubbed of secrets (Meta may echo a token in a message)."""
    posted = story.posted_at
    age = None if posted is None else round((fetched_at - posted).total_seconds() / 3600, 4)
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
        "story_age_hours": age,
    }
    row.update({name: metrics.get(name) for name in METRIC_COLUMNS})
    row["capture"] = capture
    row["media_path"] = media_path
    row.update(
        insights_status=status,
        insights_error=None if error is None else scrub(error),
        run_id=run_id,
        api_version=api_version,
    )
    return row
