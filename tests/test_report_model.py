"""What the report computes from snapshot rows (model/stories.py) and how the page treats lake
text (report/html.py): nulls stay null, the last value read wins, captions cannot inject script."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from ig_story_metrics.model import stories
from ig_story_metrics.model.snapshot import to_frame
from ig_story_metrics.report.html import AccountSection, StoriesReport, render

POSTED = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def row(story: str, hours: float, status: str = "ok", **metrics: int | None) -> dict[str, object]:
    fetched = POSTED + timedelta(hours=hours)
    return {
        "account": "NPI",
        "ig_user_id": "1",
        "story_id": story,
        "posted_at": POSTED,
        "expires_at": POSTED + timedelta(hours=24),
        "fetched_at": fetched,
        "story_age_hours": hours,
        "insights_status": status,
        "run_id": f"r{hours}",
        "api_version": "v25.0",
        "capture": "sweep" if hours > 23 else "hourly",
        "caption": None,
        **metrics,
    }


def test_the_last_value_read_wins_and_a_failed_last_read_hides_nothing() -> None:
    """A story's final views are its last non-null snapshot value, even when the last row failed."""
    frame = to_frame(
        [
            row("a", 1, views=10, taps_exit=1),
            row("a", 2, views=40, taps_exit=4),
            row("a", 3, "error"),
        ]
    )
    finals = stories.story_finals(frame)
    assert finals.height == 1
    assert finals["views"][0] == 40
    assert finals["snapshots"][0] == 2
    assert finals["exit_rate"][0] == 0.1
    assert finals["completion"][0] == 0.9


def test_a_value_never_read_stays_null_in_the_summary() -> None:
    """No story had link_clicks or views: their totals and the completion are null, never 0."""
    frame = to_frame([row("a", 1, replies=2), row("b", 1, replies=3)])
    finals = stories.story_finals(frame)
    summary = stories.summary("NPI", finals, snapshots=2)
    assert summary.replies == 5
    assert summary.link_clicks is None
    assert summary.views_total is None
    assert summary.views_median is None
    assert summary.completion is None
    assert finals["exit_rate"].to_list() == [None, None]


def test_curves_mark_sweep_points_and_skip_rows_without_values() -> None:
    """The curve points are the snapshots with values; a sweep point keeps capture = sweep."""
    frame = to_frame(
        [row("a", 1, views=5), row("a", 2, "error"), row("a", 23.9, views=9)]
    ).with_columns(
        pl.when(pl.col("story_age_hours") == 1)
        .then(None)
        .otherwise(pl.col("capture"))
        .alias("capture")
    )
    points = stories.curves(frame)
    assert points["story_age_hours"].to_list() == [1, 23.9]
    assert points["capture"].to_list() == ["hourly", "sweep"]  # null (older file) reads as hourly


def test_best_and_worst_are_disjoint() -> None:
    """With four stories, the best three and the worst three share none."""
    frame = to_frame([row(s, 1, views=v) for s, v in zip("abcd", (5, 50, 20, 1), strict=True)])
    best, worst = stories.best_and_worst(stories.story_finals(frame))
    assert best["story_id"].to_list() == ["b", "c", "a"]
    assert worst["story_id"].to_list() == ["d"]


def test_a_caption_cannot_break_out_of_the_page() -> None:
    """A caption holding markup is escaped in the cards and in the chart data."""
    evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    frame = to_frame([{**row("a", 1, views=5, taps_exit=1), "caption": evil}])
    finals = stories.story_finals(frame)
    best, worst = stories.best_and_worst(finals)
    section = AccountSection(
        summary=stories.summary("NPI", finals, 1),
        finals=finals,
        curves=stories.curves(frame),
        per_day=stories.per_day(finals),
        best=best,
        worst=worst,
    )
    page = render(
        StoriesReport(
            generated_at=POSTED,
            first_day=POSTED.date(),
            last_day=POSTED.date(),
            storage_url="data",
            accounts=[section],
            coverage=[],
            final_share=None,
        )
    )
    assert evil not in page
    assert "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page
