"""Which stories a sweep snapshots, and how it can know them without listing (pure functions).

A sweep snapshots the stories whose `expires_at` falls within its window, `(now, now + window]`,
so that each story's last snapshot lands minutes before it vanishes.

Planning from the lake: a story that expires within the window was posted 24 hours before it, so
any complete listing taken since `now + window - 24 h` already named it. The account's latest hourly
run stored one row per story it listed, so when that run is recent (`fresh`) its rows are the list
of candidates, and the sweep needs no listing call. A story posted since then cannot expire inside
the window; a story deleted since then comes back as gone (status `expired`), as it would from a
listing taken a minute earlier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ig_story_metrics.model.story import STORY_LIFETIME, Story, oldest_first

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

# Planning from the lake needs the account's last hourly listing to be at most this old: the hourly
# run on the hour plus its own duration and slack; older (a slipped schedule), the sweep lists.
PLAN_FRESH = timedelta(minutes=75)
HOURLY = "hourly"  # the `capture` of the rows an hourly run takes
# the columns a plan reads
PLAN_COLUMNS = (
    "capture",
    "fetched_at",
    "story_id",
    "posted_at",
    "media_type",
    "media_product_type",
    "permalink",
    "caption",
)


def due(stories: Iterable[Story], now: datetime, window: timedelta) -> list[Story]:
    """The stories that expire within `(now, now + window]`, oldest first (closest to expiry).

    A story listed without a valid timestamp has no known expiry: the hourly run records it, the
    sweep cannot tell whether it is due and leaves it out.
    """
    end = now + window
    return oldest_first(
        s for s in stories if s.expires_at is not None and now < s.expires_at <= end
    )


def hourly_rows(snapshots: pl.DataFrame) -> pl.DataFrame:
    """The rows taken by hourly runs (files older than the `capture` column hold only those);
    `_is_hourly` is the same rule on one value."""
    capture = pl.col("capture")
    return snapshots.filter(capture.is_null() | (capture == HOURLY))


def _is_hourly(capture: object) -> bool:
    """Whether a row's `capture` says an hourly run took it: `hourly_rows`' rule, on one value."""
    return capture is None or capture == HOURLY


@dataclass(frozen=True, slots=True)
class LakePlan:
    """What the account's latest hourly listing tells a sweep: the stories `due`, oldest first,
    and whether a story of that listing has `expired` since it was taken (or has no known
    expiry): the account's final values may have changed since that run built them."""

    due: list[Story]
    expired: bool


def lake_plan(
    snapshots: pl.DataFrame, now: datetime, window: timedelta, fresh: timedelta = PLAN_FRESH
) -> LakePlan | None:
    """The stories due at `now` as the account's latest hourly listing knows them, oldest first,
    and whether a story of that listing has expired since; None when there is no hourly listing
    in the last `fresh` (the sweep must list then).

    The frame is one account's day or two, tens of rows: its columns are read as plain lists once,
    since each Polars operation (a select or a filter) costs a fixed 0.2 to 0.6 ms whatever the
    rows; six of them per account made most of a sweep's CPU at 1,000 accounts."""
    if fresh + window >= STORY_LIFETIME:
        raise ValueError("a plan from the lake needs fresh + window < 24 h")
    columns = [snapshots.get_column(name).to_list() for name in PLAN_COLUMNS]
    hourly = [
        row
        for row in (
            dict(zip(PLAN_COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)
        )
        if _is_hourly(row["capture"])
        and isinstance(row["fetched_at"], datetime)
        and row["fetched_at"] <= now
    ]
    if not hourly:
        return None
    latest = max(row["fetched_at"] for row in hourly)
    if now - latest > fresh:
        return None
    listed = {str(row["story_id"]): row for row in hourly if row["fetched_at"] == latest}
    stories = [_story(row) for row in listed.values()]  # a story listed twice: its last row
    expired = any(s is None or s.expires_at is None or s.expires_at <= now for s in stories)
    return LakePlan(due((s for s in stories if s is not None), now, window), expired)


def _story(row: dict[str, object]) -> Story | None:
    def text(key: str) -> str | None:
        value = row.get(key)
        return value if isinstance(value, str) else None

    posted = row["posted_at"]
    if not isinstance(posted, datetime):  # listed without a valid timestamp: never due
        return None
    return Story(
        id=str(row["story_id"]),
        posted_at=posted,
        media_type=text("media_type"),
        media_product_type=text("media_product_type"),
        permalink=text("permalink"),
        caption=text("caption"),
    )
