"""The simulated day: production's schedule, and `ig-story-metrics demo --hours 6` end to end (the
CLI in a subprocess: simulator over loopback HTTP on a virtual clock, the real jobs, a real lake)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from ig_story_metrics.jobs import day
from ig_story_metrics.model.metrics import METRIC_COLUMNS
from ig_story_metrics.report.audit import DayRun, JobCost
from ig_story_metrics.report.terminal import render_day
from ig_story_metrics.simulator import SEED_ACCOUNTS

from .conftest import NOW, run_cli

HOURS = 6


def test_schedule_is_hourly_on_the_hour_and_sweeps_at_5_past_every_10_minutes() -> None:
    """In [start, end): an hourly tick at each full hour, sweeps at :05, :15, ..., :55."""
    start = NOW.replace(minute=0) + timedelta(minutes=33)
    ticks = day.schedule(start, start + timedelta(hours=2))
    assert [t.at for t in ticks] == sorted(t.at for t in ticks)
    assert all(start <= t.at < start + timedelta(hours=2) for t in ticks)
    hourly = [t.at for t in ticks if t.job == "hourly"]
    assert hourly == [start.replace(minute=0) + timedelta(hours=h) for h in (1, 2)]
    sweeps = [t.at for t in ticks if t.job == "sweep"]
    assert len(sweeps) == 12
    assert {t.minute for t in sweeps} == {5, 15, 25, 35, 45, 55}
    assert day.schedule(start, start + timedelta(hours=1), sweeps=False) == [
        day.Tick(start.replace(minute=0) + timedelta(hours=1), "hourly")
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`ig-story-metrics demo --hours 6`, once for the module, into its own lake."""
    workdir = tmp_path_factory.mktemp("demo")
    result = run_cli(
        ["demo", "--hours", str(HOURS)], {"STORAGE_URL": str(workdir / "lake")}, workdir
    )
    return result, workdir / "lake"


def test_demo_replays_the_hours_and_prints_the_audit_and_the_figures(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The demo ran every hourly run and sweep of 6 hours, caught every expired story's last
    10 minutes, and printed the audit table and the figures with and without sweeps."""
    result, _ = demo
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert f"{HOURS} hourly runs, {HOURS * 6} sweeps" in out
    assert "expired stories had a snapshot in their last 10 minutes (100.0%)" in out
    assert "audit ok" in out
    assert "hourly only" in out
    assert "hourly + sweeps │ 100.0%" in out
    assert "Traceback" not in result.stderr


def test_demo_lake_holds_hourly_and_sweep_rows_of_the_replayed_hours(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Every seed account got 6 hourly runs; each sweep row is of a story at most 12 minutes from
    expiry; all of it within the last 6 hours (the replay ends at the real current time)."""
    _, lake = demo
    frame = pl.concat(
        [pl.read_parquet(p) for p in lake.glob("Instagram/*/insights/stories/*/*.parquet")]
    )
    assert set(frame["account"]) == set(SEED_ACCOUNTS)
    now = datetime.now(UTC)
    assert frame["fetched_at"].min() >= now - timedelta(hours=HOURS, minutes=5)  # type: ignore[operator]
    assert frame["fetched_at"].max() <= now  # type: ignore[operator]
    hourly = frame.filter(pl.col("capture") == "hourly")
    runs = hourly.group_by("account").agg(pl.col("run_id").n_unique().alias("runs"))
    assert set(runs["runs"]) == {HOURS}
    sweeps = frame.filter(pl.col("capture") == "sweep")
    assert sweeps.height > 0
    left = (sweeps["expires_at"] - sweeps["fetched_at"]).dt.total_seconds()
    assert left.min() > 0  # type: ignore[operator]
    assert left.max() <= 12 * 60  # type: ignore[operator]


def test_demo_json_holds_the_day_and_the_audit(tmp_path: Path) -> None:
    """`demo --hours 1 --json` prints one JSON object: the day's costs and the audit."""
    result = run_cli(
        ["demo", "--hours", "1", "--json"], {"STORAGE_URL": str(tmp_path / "lake")}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["day"]["hourly"]["runs"] == 1
    assert answer["day"]["sweep"]["runs"] == 6
    assert answer["day"]["hourly"]["operations"] > 0
    assert answer["audit"]["storage_url"] == str(tmp_path / "lake")
    assert {c["account"] for c in answer["audit"]["coverage"]} == set(SEED_ACCOUNTS)


def test_render_day_shows_both_schedules_and_the_extra_cost() -> None:
    """The figures table: the share caught and the operations, with the sweeps' extra share."""
    run = DayRun(
        start=NOW,
        end=NOW + timedelta(hours=24),
        hourly=JobCost(runs=24, operations=3000, http_requests=200),
        sweep=JobCost(runs=144, operations=150, http_requests=60),
        share_hourly_only=0.17,
        share_with_sweeps=1.0,
    )
    console = Console(record=True, width=120)
    render_day(run, console)
    text = " ".join(console.export_text().split())
    assert "hourly only │ 17.0% │ 3000 │ 200" in text
    assert "hourly + sweeps │ 100.0% │ 3150 (+5.0%) │ 260" in text


def test_demo_ends_with_the_final_table_and_its_complete_share(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The simulator's signed webhook deliveries were stored during the replay, and the demo ended
    with `finalize`: the final table holds the expired stories, and the share `complete` is
    printed."""
    result, lake = demo
    out = " ".join(result.stdout.split())
    assert "final values:" in out
    assert "complete 100.0%" in out
    deliveries = list(lake.glob("Instagram/*/webhooks/story_insights/*/*.json"))
    assert deliveries
    final = pl.read_parquet(lake / "tables/story_final/*/*/story_final.parquet")
    assert final.height > 0
    assert final["complete"].all()
    assert set(final["final_source"]) <= {"poll", "webhook", "poll+webhook", "none"}
    # "none": Meta withheld every snapshot's values (fewer than 5 viewers) and the webhook, due an
    # hour after expiry, has not come yet; whether the replay ends with such a story depends on
    # the hour it starts at
    nothing = final.filter(pl.col("final_source") == "none")
    assert (nothing["webhook_deliveries"] == 0).all()
    assert nothing.select(pl.all_horizontal(pl.col(METRIC_COLUMNS).is_null())).to_series().all()
    assert set(nothing["final_status"]) <= {"not_enough_viewers"}
    assert final.filter(pl.col("final_source") == "poll+webhook").height > 0
