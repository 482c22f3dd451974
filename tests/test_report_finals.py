"""The report takes a story's final values from the final-values table when it was finalized
(its last snapshot values filled with Meta's webhook values), from its snapshots otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from ig_story_metrics.jobs import report
from ig_story_metrics.jobs.finalize import finalize
from ig_story_metrics.jobs.webhooks import store_delivery
from ig_story_metrics.model import stories
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.snapshot import SNAPSHOTS, snapshot_row
from ig_story_metrics.model.story import Story
from ig_story_metrics.storage import open_lake

NPI = Account("NPI", "17841400000000001")
P = datetime(2026, 11, 10, 8, tzinfo=UTC)  # when both stories were posted
NOW = P + timedelta(days=1, hours=3)  # both expired


def row(story: Story, at: datetime, views: int | None, taps_exit: int | None) -> dict[str, object]:
    metrics = {"views": views, "reach": None, "taps_exit": taps_exit}
    return snapshot_row(
        account=NPI.name,
        ig_user_id=NPI.ig_user_id,
        story=story,
        fetched_at=at,
        run_id=f"run-{at:%d%H%M}",
        api_version="v25.0",
        metrics=metrics,
        status="partial",
        error="reach not read",
    )


def delivery(media: str, sent: datetime, **values: int) -> bytes:
    change = {"field": "story_insights", "value": {"media_id": media, **values}}
    entry = {"id": NPI.ig_user_id, "time": int(sent.timestamp()), "changes": [change]}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def test_finalized_stories_take_the_tables_values_and_the_others_their_snapshots(
    tmp_path: Path,
) -> None:
    """Story a has a webhook delivery with its reach (never read by the polls) and is finalized:
    the report shows that reach and `final_source`; story b has no delivery: its polled values
    stand and its reach stays null, never 0."""
    a = Story("s-a", P, "IMAGE", "STORY")
    b = Story("s-b", P + timedelta(minutes=5), "IMAGE", "STORY")
    rows = [row(s, s.posted_at + timedelta(hours=h), 10 * h, h) for s in (a, b) for h in (1, 2)]
    with open_lake(str(tmp_path / "lake")) as lake:
        frame = SNAPSHOTS.frame(rows)
        lake.append(SNAPSHOTS, NPI.name, P.date(), frame)
        store_delivery(lake, [NPI], delivery("s-a", P + timedelta(hours=24), reach=17), NOW)
        result = finalize(lake, {NPI.name: NPI.ig_user_id}, NOW, days=2)
        assert result.stories == 2
        built = report.build(lake, now=NOW, days=2)
    (section,) = built.accounts
    finals = {r["story_id"]: r for r in section.finals.iter_rows(named=True)}
    assert finals["s-a"]["reach"] == 17  # Meta's webhook value: the polls never read reach
    assert finals["s-a"]["final_source"] == "poll+webhook"
    assert finals["s-a"]["views"] == 20
    assert finals["s-b"]["reach"] is None
    assert finals["s-b"]["final_source"] == "poll"
    assert finals["s-a"]["completion"] == 1 - 2 / 20


def test_without_a_final_table_the_snapshot_values_stand() -> None:
    """No finalized story: the values and the completion proxy are the snapshots'; the table's
    own columns are null, not invented."""
    finals = pl.DataFrame(
        {"story_id": ["x"], "views": [10], "reach": [None], "taps_exit": [3]},
        schema={"story_id": pl.String, "views": pl.Int64, "reach": pl.Int64, "taps_exit": pl.Int64},
    )
    out = stories.with_final_values(finals, pl.DataFrame())
    assert out.select("views", "reach", "final_source", "complete").row(0) == (10, None, None, None)
    table = pl.DataFrame(
        {"story_id": ["other"], "views": [99], "webhook_reach": [5], "final_source": ["poll"]}
    )
    kept = stories.with_final_values(finals, table)
    assert kept.select("views", "reach", "final_source").row(0) == (10, None, None)
