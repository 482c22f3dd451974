"""What the HTML report shows of the stories, computed from snapshot rows (pure polars, no I/O).

- `story_finals()`: one row per story: identity, posting, its last value of every metric (the last
  non-null snapshot value, so a failed last read never hides what an earlier one saw), how many
  snapshots, the completion proxy `1 - taps_exit / views` and the exit rate `taps_exit / views`;
- `summary()`: one account's totals and medians over those stories;
- `curves()`: every snapshot with values as (story, age in hours, views, reach, capture), the points
  of the story curves;
- `per_day()`: stories posted per UTC day;
- `best_and_worst()`: the stories with the most and the fewest final views.

A null stays null: a story whose views were never read has no completion proxy, and a sum over
stories none of which has a value is null, not 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from ig_story_metrics.model.coverage import TAKEN

FINAL_METRICS = (
    "views",
    "reach",
    "replies",
    "shares",
    "link_clicks",
    "follows",
    "taps_exit",
    "taps_forward",
    "total_interactions",
)
IDENTITY = ("media_type", "caption", "permalink", "posted_at", "expires_at")


@dataclass(frozen=True, slots=True)
class Summary:
    """One account's stories in numbers (null: no story had the value)."""

    account: str
    stories: int
    snapshots: int
    views_total: int | None
    views_median: float | None
    reach_total: int | None
    reach_median: float | None
    replies: int | None
    shares: int | None
    link_clicks: int | None
    follows: int | None
    completion: float | None  # 1 - sum(taps_exit) / sum(views) over stories with both


def _optional(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    """A column of the frame, or nulls of `dtype` when files older than it hold none."""
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name)


def story_finals(snapshots: pl.DataFrame) -> pl.DataFrame:
    """One row per (account, story_id), sorted by account and posting time."""
    ordered = snapshots.with_columns(_optional(snapshots, "media_path", pl.String())).sort(
        "fetched_at"
    )
    taken = pl.col("insights_status").is_in(TAKEN)
    finals = ordered.group_by("account", "story_id").agg(
        *(pl.col(name).drop_nulls().last() for name in IDENTITY),
        *(pl.col(name).drop_nulls().last() for name in FINAL_METRICS),
        pl.col("media_path").drop_nulls().last(),
        taken.sum().alias("snapshots"),
    )
    return with_rates(finals).sort("account", "posted_at", "story_id", nulls_last=True)


def with_rates(finals: pl.DataFrame) -> pl.DataFrame:
    """The exit rate `taps_exit / views` and the completion proxy `1 - taps_exit / views`."""
    exit_rate = pl.when(pl.col("views") > 0).then(pl.col("taps_exit") / pl.col("views"))
    return finals.with_columns(exit_rate.alias("exit_rate"), (1 - exit_rate).alias("completion"))


# The final-values table's webhook columns that stand for a report metric (the legacy `exits` is
# a tap out of the story).
WEBHOOK_OF = {
    "views": "webhook_views",
    "reach": "webhook_reach",
    "replies": "webhook_replies",
    "shares": "webhook_shares",
    "taps_forward": "webhook_taps_forward",
    "taps_exit": "webhook_exits",
}


def with_final_values(finals: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """`finals` (from `story_finals`) with the final-values table's word where it has the story:
    its metrics (the last snapshot values, filled with Meta's webhook values where no poll read
    one), `final_source` and `complete`. Without a table (not finalized yet) the snapshots' values
    stand, and `final_source`/`complete` are null."""
    extra = {"final_source": pl.String(), "complete": pl.Boolean()}
    if table.is_empty() or "story_id" not in table.columns:
        return finals.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in extra.items())
    metrics = [m for m in FINAL_METRICS if m in table.columns]

    def final(metric: str) -> pl.Expr:
        hook = WEBHOOK_OF.get(metric)
        own = pl.col(metric).cast(pl.Int64)
        value = pl.coalesce(own, pl.col(hook).cast(pl.Int64)) if hook in table.columns else own
        return value.alias(f"{metric}__final")

    picked = table.select(
        pl.col("story_id").cast(pl.String),
        *(final(m) for m in metrics),
        *(_optional(table, c, t).cast(t) for c, t in extra.items()),
    ).unique("story_id", keep="last")
    joined = finals.join(picked, on="story_id", how="left")
    return with_rates(
        joined.with_columns(
            pl.coalesce(pl.col(f"{m}__final"), pl.col(m)).alias(m) for m in metrics
        ).drop(f"{m}__final" for m in metrics)
    )


def _sum(frame: pl.DataFrame, name: str) -> int | None:
    values = frame[name].drop_nulls()
    return None if values.is_empty() else int(values.sum())


def _median(frame: pl.DataFrame, name: str) -> float | None:
    value = frame[name].drop_nulls().median()
    return None if value is None else float(value)  # type: ignore[arg-type]


def summary(account: str, finals: pl.DataFrame, snapshots: int) -> Summary:
    """The totals of one account's stories (`finals` from `story_finals`, one account)."""
    both = finals.filter(pl.col("views") > 0, pl.col("taps_exit").is_not_null())
    completion = None
    if not both.is_empty():
        completion = 1 - float(both["taps_exit"].sum()) / float(both["views"].sum())
    return Summary(
        account=account,
        stories=finals.height,
        snapshots=snapshots,
        views_total=_sum(finals, "views"),
        views_median=_median(finals, "views"),
        reach_total=_sum(finals, "reach"),
        reach_median=_median(finals, "reach"),
        replies=_sum(finals, "replies"),
        shares=_sum(finals, "shares"),
        link_clicks=_sum(finals, "link_clicks"),
        follows=_sum(finals, "follows"),
        completion=completion,
    )


def curves(snapshots: pl.DataFrame) -> pl.DataFrame:
    """The points of the story curves: snapshots with values, by story and age."""
    capture = pl.col("capture").fill_null("hourly")  # files older than the column hold hourly rows
    return (
        snapshots.filter(
            pl.col("insights_status").is_in(TAKEN), pl.col("story_age_hours").is_not_null()
        )
        .select("account", "story_id", "story_age_hours", "views", "reach", capture)
        .sort("account", "story_id", "story_age_hours")
    )


def per_day(finals: pl.DataFrame) -> list[tuple[date, int]]:
    """Stories posted per UTC day (days without a story are left out)."""
    days = (
        finals.drop_nulls("posted_at")
        .group_by(pl.col("posted_at").dt.date().alias("day"))
        .len()
        .sort("day")
    )
    return [(row["day"], row["len"]) for row in days.iter_rows(named=True)]


def best_and_worst(finals: pl.DataFrame, n: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The `n` stories with the most final views and the `n` with the fewest (disjoint when
    there are fewer than 2n stories with views)."""
    ranked = finals.drop_nulls("views").sort("views", "story_id", descending=[True, False])
    best = ranked.head(n)
    rest = ranked.tail(max(ranked.height - best.height, 0))
    return best, rest.tail(n).reverse()
