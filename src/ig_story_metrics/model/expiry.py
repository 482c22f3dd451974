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
    """The rows taken by hourly runs (files older than the `capture` column hold only those)."""
    capture = pl.col("capture")
    return snapshots.filter(capture.is_null() | (capture == "hourly"))


def plan_from_snapshots(
    snapshots: pl.DataFrame, now: datetime, window: timedelta, fresh: timedelta = PLAN_FRESH
) -> list[Story] | None:
    """The stories due at `now` as the account's latest hourly listing knows them, oldest first;
    None when there is no hourly listing in the last `fresh` (the sweep must list then)."""
    if fresh + window >= STORY_LIFETIME:
        raise ValueError("a plan from the lake needs fresh + window < 24 h")
    hourly = hourly_rows(snapshots).filter(pl.col("fetched_at") <= now)
    if hourly.is_empty():
        return None
    latest = hourly.get_column("fetched_at").max()
    assert isinstance(latest, datetime)  # noqa: S101 - a non-empty datetime column
    if now - latest > fresh:
        return None
    listed = hourly.filter(pl.col("fetched_at") == latest).unique("story_id", keep="last")
    stories = (_story(row) for row in listed.iter_rows(named=True))
    return due((story for story in stories if story is not None), now, window)


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
