"""Coverage: how much of each story's life the snapshots recorded (pure polars over snapshot rows).

`day_coverage()` answers, per account and UTC day, what `ig-story-metrics audit` shows:

- stories seen: stories with a row fetched that day; snapshots per story (min / median / max):
  their snapshots that day;
- the largest gap between two consecutive snapshots of one story (the gap counts on the day of
  the later snapshot);
- stories that expired that day (before `now`), and how many of them had their last snapshot at
  most `final_within` before expiry; for the rest, how old the last snapshot was when the story
  vanished (`missed_finals`);
- full hours with no hourly run: hours during which a story of the account is known to have been
  live from start to end, yet no hourly snapshot was taken (an hour with no live story cannot be
  told apart from an hour without a run, and is not counted); only from the account's first hourly
  snapshot on, so the time before the tool was installed is no gap;
- stories first seen more than `late_after` after they were posted (posted after the account's
  first hourly snapshot: earlier ones could not have been seen);
- stories that expired that day more than `final_row_after` before `now` (by then a run has
  finalized them) with no row in the final-values table (`missing_final_rows`), when the caller
  gives the rows that table holds.

A snapshot is a row whose values were read (`ok`, `partial`) or that Meta withheld for too few
viewers (`not_enough_viewers`); a row of a story that failed or had already gone still shows that
the story was seen. Load the day before the first reported day too: a story's earlier snapshots
and its posting lie there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from ig_story_metrics.model.expiry import hourly_rows

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

TAKEN = ("ok", "partial", "not_enough_viewers")
FINAL_WITHIN = timedelta(minutes=10)
LATE_AFTER = timedelta(minutes=70)
# Every hourly run finalizes every account, a sweep those with a story expired since: within an
# hour and a quarter of its expiry (an hourly run on the hour, its duration and slack) a story has
# its final row.
FINAL_ROW_AFTER = timedelta(minutes=75)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class MissedFinal:
    """A story that vanished without a snapshot in its last minutes."""

    story_id: str
    expires_at: datetime
    last_snapshot_at: datetime | None  # None: never a snapshot with values
    minutes_before_expiry: float | None


@dataclass(frozen=True, slots=True)
class LateStory:
    """A story first seen long after it was posted (its early life is not recorded)."""

    story_id: str
    posted_at: datetime
    first_seen_at: datetime
    minutes_after_posting: float


@dataclass(frozen=True, slots=True)
class DayCoverage:
    """One account's coverage on one UTC day."""

    account: str
    day: date
    stories_seen: int
    snapshots_min: int | None
    snapshots_median: float | None
    snapshots_max: int | None
    largest_gap_minutes: float | None
    largest_gap_story: str | None
    expired: int
    finals_caught: int
    missed_finals: tuple[MissedFinal, ...]
    missing_hours: tuple[datetime, ...]
    late_first_seen: tuple[LateStory, ...]
    # stories (by expiry) without their row in the final-values table; () when it was not checked
    missing_final_rows: tuple[str, ...] = ()


class _Seen(TypedDict):
    stories_seen: int
    snapshots_min: int | None
    snapshots_median: float | None
    snapshots_max: int | None


class _Finals(TypedDict):
    expired: int
    finals_caught: int
    missed_finals: tuple[MissedFinal, ...]


def _minutes(expr: pl.Expr) -> pl.Expr:
    return expr.dt.total_microseconds() / 60e6


def story_facts(snapshots: pl.DataFrame) -> pl.DataFrame:
    """One row per (account, story): posting, expiry, first sight, last snapshot with values."""
    taken = pl.col("insights_status").is_in(TAKEN)
    return snapshots.group_by("account", "story_id").agg(
        pl.col("posted_at").min(),
        pl.col("expires_at").max(),
        pl.col("fetched_at").min().alias("first_seen"),
        pl.col("fetched_at").filter(taken).max().alias("last_taken"),
    )


def _gaps(snapshots: pl.DataFrame) -> pl.DataFrame:
    """Per (account, day): the largest gap between consecutive snapshots of one story."""
    taken = snapshots.filter(pl.col("insights_status").is_in(TAKEN))
    gaps = (
        taken.select("account", "story_id", "fetched_at")
        .unique()
        .sort("account", "story_id", "fetched_at")
        .with_columns(
            _minutes(pl.col("fetched_at").diff().over("account", "story_id")).alias("gap"),
            pl.col("fetched_at").dt.date().alias("day"),
        )
        .drop_nulls("gap")
    )
    return gaps.sort("gap", descending=True).group_by("account", "day").first()


def final_rows_due(snapshots: pl.DataFrame, days: Iterable[date], by: datetime) -> pl.DataFrame:
    """The stories (account, story_id) that expired on `days` by `by`, which must have their row
    in the final-values table (`by`: `final_row_after` before the audit), with each posted date
    their snapshots give (`posted_date`: the partition that row is in; a story whose listing
    changed its timestamp has more than one)."""
    due = story_facts(snapshots).filter(_final_row_due(list(days), by))
    return (
        snapshots.select("account", "story_id", pl.col("posted_at").dt.date().alias("posted_date"))
        .drop_nulls()
        .unique()
        .join(due, on=["account", "story_id"], how="semi")
        .sort("account", "posted_date", "story_id")
    )


def _final_row_due(days: list[date], by: datetime) -> pl.Expr:
    """Whether a story (of `story_facts`) expired on `days` by `by`: it has a final row then."""
    expires = pl.col("expires_at")
    return expires.dt.date().is_in(days) & (expires <= by) & pl.col("posted_at").is_not_null()


def missing_hours(
    snapshots: pl.DataFrame, days: Iterable[date], now: datetime
) -> dict[tuple[str, date], tuple[datetime, ...]]:
    """Per (account, day): the full hours (their start) with no hourly run while a story of the
    account was known to be live throughout."""
    hourly = hourly_rows(snapshots)
    if hourly.is_empty():
        return {}
    chosen = sorted(set(days))
    hours = pl.DataFrame(
        {
            "hour": pl.datetime_range(
                datetime.combine(chosen[0], datetime.min.time(), now.tzinfo),
                datetime.combine(chosen[-1], datetime.max.time(), now.tzinfo),
                "1h",
                time_unit="us",
                eager=True,
            )
        }
    ).filter(pl.col("hour").dt.date().is_in(chosen) & (pl.col("hour") + HOUR <= now))
    start = hourly.group_by("account").agg(pl.col("fetched_at").min().dt.truncate("1h").alias("s"))
    covered = hourly.select("account", pl.col("fetched_at").dt.truncate("1h").alias("hour"))
    expected = (
        story_facts(snapshots)
        .join(hours, how="cross")
        .filter(
            (pl.col("posted_at") <= pl.col("hour"))
            & (pl.col("expires_at") >= pl.col("hour") + HOUR)
        )
        .join(start, on="account")
        .filter(pl.col("hour") >= pl.col("s"))
        .select("account", "hour")
        .unique()
    )
    missing = expected.join(covered.unique(), on=["account", "hour"], how="anti").sort("hour")
    found: dict[tuple[str, date], list[datetime]] = {}
    for account, hour in missing.iter_rows():
        found.setdefault((account, hour.date()), []).append(hour)
    return {key: tuple(value) for key, value in found.items()}


def day_coverage(
    snapshots: pl.DataFrame,
    days: Iterable[date],
    now: datetime,
    *,
    final_within: timedelta = FINAL_WITHIN,
    late_after: timedelta = LATE_AFTER,
    accounts: Iterable[str] = (),
    final_rows: Mapping[str, Collection[str]] | None = None,
    final_row_after: timedelta = FINAL_ROW_AFTER,
) -> list[DayCoverage]:
    """Coverage per account (those with rows, and `accounts`) and day of `days`, in that order.
    `final_rows`: the story ids each account has in the final-values table (None: not checked)."""
    chosen = sorted(set(days))
    facts = story_facts(snapshots)
    gaps = {(r["account"], r["day"]): r for r in _gaps(snapshots).iter_rows(named=True)}
    holes = missing_hours(snapshots, chosen, now)
    starts = dict(
        hourly_rows(snapshots).group_by("account").agg(pl.col("fetched_at").min()).iter_rows()
    )
    names = sorted({*snapshots.get_column("account").unique().to_list(), *accounts})
    out = []
    for account in names:
        rows = snapshots.filter(pl.col("account") == account)
        mine = facts.filter(pl.col("account") == account)
        for day in chosen:
            gap = gaps.get((account, day))
            out.append(
                DayCoverage(
                    account=account,
                    day=day,
                    **_seen(rows.filter(pl.col("fetched_at").dt.date() == day)),
                    largest_gap_minutes=None if gap is None else round(gap["gap"], 1),
                    largest_gap_story=None if gap is None else gap["story_id"],
                    **_finals(mine, day, now, final_within),
                    missing_hours=holes.get((account, day), ()),
                    late_first_seen=_late(mine, day, late_after, starts.get(account)),
                    missing_final_rows=_without_final_row(
                        mine, day, now - final_row_after, final_rows, account
                    ),
                )
            )
    return out


def _seen(rows: pl.DataFrame) -> _Seen:
    """Stories seen in one day's rows, and their snapshots per story (min / median / max)."""
    counts = (
        rows.group_by("story_id")
        .agg(pl.col("insights_status").is_in(TAKEN).sum().alias("n"))
        .get_column("n")
    )
    if counts.is_empty():
        return {
            "stories_seen": 0,
            "snapshots_min": None,
            "snapshots_median": None,
            "snapshots_max": None,
        }
    median = counts.median()
    assert isinstance(median, float | int)  # noqa: S101 - a non-empty integer column
    return {
        "stories_seen": counts.len(),
        "snapshots_min": int(counts.min()),  # type: ignore[arg-type]
        "snapshots_median": float(median),
        "snapshots_max": int(counts.max()),  # type: ignore[arg-type]
    }


def _finals(facts: pl.DataFrame, day: date, now: datetime, within: timedelta) -> _Finals:
    """The stories that expired on `day` (before `now`), and those whose last minutes were missed."""
    ended = facts.filter(
        (pl.col("expires_at").dt.date() == day) & (pl.col("expires_at") <= now)
    ).with_columns(_minutes(pl.col("expires_at") - pl.col("last_taken")).alias("before"))
    caught = pl.col("before").is_not_null() & (pl.col("before") <= within.total_seconds() / 60)
    missed = ended.filter(~caught).sort("expires_at")
    return {
        "expired": ended.height,
        "finals_caught": ended.height - missed.height,
        "missed_finals": tuple(
            MissedFinal(
                story_id=r["story_id"],
                expires_at=r["expires_at"],
                last_snapshot_at=r["last_taken"],
                minutes_before_expiry=None if r["before"] is None else round(r["before"], 1),
            )
            for r in missed.iter_rows(named=True)
        ),
    }


def _without_final_row(
    facts: pl.DataFrame,
    day: date,
    by: datetime,
    final_rows: Mapping[str, Collection[str]] | None,
    account: str,
) -> tuple[str, ...]:
    """The stories that expired on `day` by `by` and have no final row (by expiry)."""
    if final_rows is None:
        return ()
    stored = final_rows.get(account, ())
    due = facts.filter(_final_row_due([day], by)).sort("expires_at", "story_id")
    return tuple(story for story in due.get_column("story_id") if story not in stored)


def _late(
    facts: pl.DataFrame, day: date, after: timedelta, start: datetime | None
) -> tuple[LateStory, ...]:
    """Stories first seen on `day` more than `after` after posting (posted since `start`)."""
    if start is None:
        return ()
    late = facts.filter(
        (pl.col("first_seen").dt.date() == day)
        & (pl.col("posted_at") >= start)
        & (pl.col("first_seen") - pl.col("posted_at") > after)
    ).sort("posted_at")
    return tuple(
        LateStory(
            story_id=r["story_id"],
            posted_at=r["posted_at"],
            first_seen_at=r["first_seen"],
            minutes_after_posting=round((r["first_seen"] - r["posted_at"]).total_seconds() / 60, 1),
        )
        for r in late.iter_rows(named=True)
    )


def final_share(coverage: Iterable[DayCoverage]) -> float | None:
    """The share of expired stories whose last snapshot came within the final minutes."""
    rows = list(coverage)
    expired = sum(c.expired for c in rows)
    return None if expired == 0 else sum(c.finals_caught for c in rows) / expired
