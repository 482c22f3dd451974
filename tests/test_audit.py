"""The audit, over a lake written by the production jobs on a virtual clock: a replay of the last
eight hours in which the test skips one hourly run and the sweeps that would have caught one
story's last minutes, then checks that the audit names exactly those misses."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from pydantic import SecretStr
from rich.console import Console

from ig_story_metrics.clock import VirtualClock
from ig_story_metrics.jobs import audit, day, finalize
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.coverage import FINAL_ROW_AFTER, day_coverage
from ig_story_metrics.model.final import STORY_FINAL, final_rows
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.report.audit import log_audit
from ig_story_metrics.report.models import AccountReport, RunReport
from ig_story_metrics.report.terminal import render_audit
from ig_story_metrics.settings import load_settings
from ig_story_metrics.simulator import DEFAULT_TOKEN, SEED_ACCOUNTS, World, simulator_server
from ig_story_metrics.simulator.world import SimStory
from ig_story_metrics.storage import Lake, open_lake
from tests.storage.writer import ACCOUNT, DAY, snapshot_frame

from .conftest import NOW, run_cli

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
WINDOW = timedelta(minutes=12)


@dataclass
class Replayed:
    lake: Path
    end: datetime
    ticks: list[day.Tick]
    skipped_hour: datetime
    missed: SimStory
    world: World


def live_between(world: World, start: datetime, end: datetime) -> list[SimStory]:
    found = {
        s.id: s
        for a in world.accounts
        for h in range(int((end - start) / HOUR) + 2)
        for s in world.live_stories(a, start + h * HOUR)
    }
    return sorted(found.values(), key=lambda s: s.expires_at)


def expected_misses(world: World, ticks: list[day.Tick], end: datetime) -> set[str]:
    """The oracle: stories that expired by `end` whose last capture by `ticks` was more than 10
    minutes before expiry (an hourly tick captures every live story, a sweep those due)."""
    missed = set()
    for story in live_between(world, ticks[0].at, end):
        if not ticks[0].at < story.expires_at <= end:
            continue
        takes = [
            t.at
            for t in ticks
            if story.posted_at <= t.at < story.expires_at
            and (t.job == "hourly" or story.expires_at - t.at <= WINDOW)
        ]
        if not takes or story.expires_at - max(takes) > 10 * MINUTE:
            missed.add(story.id)
    return missed


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """Eight hours up to now, minus the third hourly run and the sweeps before one expiry."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - 8 * HOUR
    ticks = day.schedule(start, end)
    skipped_hour = [t for t in ticks if t.job == "hourly"][2].at
    clock = VirtualClock(start)
    lake_dir = tmp_path_factory.mktemp("audit") / "lake"
    accounts = [Account(n, u) for n, u in SEED_ACCOUNTS.items()]
    with simulator_server(clock=clock) as server:
        world = server.simulator.world
        missed = next(
            s
            for s in live_between(world, start, end)
            if start + 5 * HOUR < s.expires_at < end - 15 * MINUTE and s.expires_at.minute >= 25
        )
        kept = [
            t
            for t in ticks
            if t.at != skipped_hour
            and not (t.job == "sweep" and missed.expires_at - WINDOW <= t.at < missed.expires_at)
        ]
        settings = load_settings({"IG_GRAPH_API_URL": server.url, "STORAGE_URL": str(lake_dir)})
        tokens = {a.name: SecretStr(DEFAULT_TOKEN) for a in accounts}
        with open_lake(str(lake_dir)) as lake:
            run = day.run(settings, accounts, tokens, clock, kept, lake=lake)
    assert run.hourly.failed_runs == run.sweep.failed_runs == 0
    return Replayed(lake_dir, end, kept, skipped_hour, missed, world)


@pytest.fixture
def lake(replayed: Replayed) -> Iterator[Lake]:
    with open_lake(str(replayed.lake)) as opened:
        yield opened


def test_audit_names_the_skipped_hour_and_the_missed_final(replayed: Replayed, lake: Lake) -> None:
    """The hour the test skipped is the only hour without a run, and the stories whose last
    sweeps it skipped are exactly the missed finals, with the age of their last snapshot."""
    report = audit.audit(lake, now=replayed.end, days=2)
    assert not report.ok
    assert report.exit_code == 1
    holes = {(c.account, h) for c in report.coverage for h in c.missing_hours}
    assert ("NPI", replayed.skipped_hour) in holes
    assert {h for _, h in holes} == {replayed.skipped_hour}
    missed = {m.story_id: m for c in report.coverage for m in c.missed_finals}
    assert set(missed) == expected_misses(replayed.world, replayed.ticks, replayed.end)
    mine = missed[replayed.missed.id]
    assert mine.last_snapshot_at is not None
    assert mine.minutes_before_expiry is not None
    assert mine.minutes_before_expiry > 10
    assert report.finals_caught == report.expired - len(missed)
    assert report.expired > len(missed)


def test_stories_posted_before_the_skipped_run_are_first_seen_late(
    replayed: Replayed, lake: Lake
) -> None:
    """Skipping a run delays the first sight of stories posted in the hour before it: those
    posted more than 70 minutes before the next run are reported late, and no other story."""
    report = audit.audit(lake, now=replayed.end, days=2)
    late = {s.story_id for c in report.coverage for s in c.late_first_seen}
    next_run = replayed.skipped_hour + HOUR
    expected = {
        s.id
        for s in live_between(replayed.world, replayed.ticks[0].at, replayed.end)
        if replayed.skipped_hour - HOUR < s.posted_at < next_run - 70 * MINUTE
    }
    assert late == expected


def test_thresholds_let_a_known_miss_pass(replayed: Replayed, lake: Lake) -> None:
    """With thresholds above the misses, the same audit is ok (exit 0)."""
    report = audit.audit(lake, now=replayed.end, days=2, max_missed_finals=99, max_missing_hours=99)
    assert report.missed_finals > 0
    assert report.ok
    assert report.exit_code == 0


def test_cli_audit_json_exits_1_and_names_the_misses(replayed: Replayed, tmp_path: Path) -> None:
    """`ig-story-metrics audit --json` reads STORAGE_URL, prints the figures, exits 1 on a miss;
    with thresholds above the misses it exits 0."""
    env = {"STORAGE_URL": str(replayed.lake)}
    result = run_cli(["audit", "--days", "2", "--json"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    missed = [m["story_id"] for c in report["coverage"] for m in c["missed_finals"]]
    assert replayed.missed.id in missed
    assert report["missing_hours"] >= 1
    assert report["ok"] is False
    relaxed = ["--max-missed-finals", "99", "--max-missing-hours", "99"]
    assert run_cli(["audit", "--days", "2", *relaxed], env, tmp_path).returncode == 0


def test_cli_audit_refuses_bad_days(tmp_path: Path) -> None:
    """--days 0 is a usage error (exit 2), not a traceback."""
    result = run_cli(["audit", "--days", "0"], {"STORAGE_URL": str(tmp_path)}, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_terminal_audit_names_each_miss(replayed: Replayed, lake: Lake) -> None:
    """The terminal table is followed by one line per missed final and per missing hour."""
    report = audit.audit(lake, now=replayed.end, days=2)
    console = Console(record=True, width=120)
    render_audit(report, console)
    text = console.export_text()
    assert f"story {replayed.missed.id} expired {replayed.missed.expires_at:%H:%M}" in text
    assert f"no hourly run in the hour(s) starting {replayed.skipped_hour:%H}:00" in text
    assert "FAILED" in text


def test_daily_audit_logs_one_entry_after_the_midnight_run_only(
    replayed: Replayed, lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """The function's daily audit runs after the hour-0 hourly run (one `audit` entry with the
    figures), not after other runs or sweeps."""
    midnight = replayed.end.replace(hour=0, minute=0) + timedelta(days=1)

    def run(at: datetime, capture: str = "hourly") -> RunReport:
        return RunReport(
            run_id="r", capture=capture, fetched_at=at, api_version="v25.0", storage_url=""
        )

    caplog.set_level(logging.INFO, logger="ig_story_metrics.audit")
    assert audit.daily_audit(lake, run(midnight + HOUR)) is None
    assert audit.daily_audit(lake, run(midnight, "sweep")) is None
    report = audit.daily_audit(lake, run(midnight))
    assert report is not None
    assert report.days == [midnight.date() - timedelta(days=1)]
    assert report.final_row_minutes == 0  # the midnight run has just finalized the day's last
    entries = [r for r in caplog.records if getattr(r, "event", None) == "audit"]
    assert len(entries) == 1
    entry = entries[0].__dict__
    assert entry["missed_finals"] == report.missed_finals
    assert entry["missing_hours"] == report.missing_hours
    assert entry["missing_final_rows"] == report.missing_final_rows
    assert entry["ok"] is report.ok
    assert {c.account for c in report.coverage} == set(SEED_ACCOUNTS)  # a run without accounts
    mine = run(midnight)
    mine.accounts = [AccountReport(account="LT", ig_user_id=SEED_ACCOUNTS["LT"])]
    narrowed = audit.daily_audit(lake, mine)
    assert narrowed is not None
    assert {c.account for c in narrowed.coverage} == {"LT"}  # the run's accounts only


def test_gaps_counts_and_medians_per_day() -> None:
    """Snapshots per story and the largest gap come from snapshots with values, per UTC day."""
    posted = NOW - 2 * HOUR
    base = {"account": "NPI", "posted_at": posted, "expires_at": posted + 24 * HOUR}
    rows = [
        {
            **base,
            "story_id": "a",
            "fetched_at": NOW + h * HOUR,
            "insights_status": status,
            "capture": "hourly",
        }
        for h, status in ((0, "ok"), (1, "ok"), (3, "ok"), (4, "error"))
    ] + [
        {
            **base,
            "story_id": "b",
            "fetched_at": NOW + h * HOUR,
            "insights_status": "ok",
            "capture": "hourly",
        }
        for h in (0, 1)
    ]
    [c] = day_coverage(SNAPSHOTS.frame(rows), [NOW.date()], NOW + 5 * HOUR)
    assert (c.stories_seen, c.snapshots_min, c.snapshots_median, c.snapshots_max) == (2, 2, 2.5, 3)
    assert (c.largest_gap_minutes, c.largest_gap_story) == (120.0, "a")
    assert c.missing_hours == (NOW.replace(minute=0) + 2 * HOUR,)
    assert c.expired == 0


def test_frame_without_the_capture_column_counts_as_hourly() -> None:
    """Rows read from files older than the `capture` column count as hourly runs."""
    posted = NOW - 2 * HOUR
    frame = SNAPSHOTS.frame(
        {
            "account": "NPI",
            "story_id": "a",
            "posted_at": posted,
            "expires_at": posted + 24 * HOUR,
            "fetched_at": NOW + h * HOUR,
            "insights_status": "ok",
        }
        for h in (0, 1, 2)
    )
    assert frame["capture"].null_count() == 3
    [c] = day_coverage(frame, [NOW.date()], NOW + 3 * HOUR)
    assert c.missing_hours == ()
    assert c.snapshots_max == 3


def test_the_audit_lists_quarantined_files(tmp_path: Path) -> None:
    """A daily file that could not be read is moved aside by the next write: the audit names it
    (terminal and JSON), so a person knows rows are set aside."""
    with open_lake(str(tmp_path / "lake")) as lake:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        daily = next((tmp_path / "lake").rglob("*.parquet"))
        daily.write_bytes(b"not parquet at all")
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
        now = datetime(DAY.year, DAY.month, DAY.day, 23, tzinfo=UTC)
        report = audit.audit(lake, now=now, days=1)
    assert len(report.quarantined) == 1
    assert ".parquet.corrupt-" in report.quarantined[0]
    assert report.quarantined[0] in report.model_dump_json()
    console = Console(record=True, width=400)
    render_audit(report, console)
    assert "quarantined" in console.export_text()


def due_final_rows(replayed: Replayed, by: datetime) -> list[SimStory]:
    """The oracle: the stories of the replay that expired by `by`, each of which must have its
    row in the final-values table."""
    return [
        s
        for s in live_between(replayed.world, replayed.ticks[0].at, replayed.end)
        if replayed.ticks[0].at < s.expires_at <= by
    ]


def final_table_ids(lake_dir: Path) -> set[str]:
    """The story ids of the final-values table, read with Polars alone (hive partitions)."""
    files = sorted(lake_dir.glob("tables/story_final/account=*/posted_date=*/*.parquet"))
    return set(pl.read_parquet(files, hive_partitioning=True)["story_id"].to_list())


def test_the_runs_leave_no_expired_story_without_its_final_row(
    replayed: Replayed, lake: Lake
) -> None:
    """The replay's hourly runs and sweeps finalize as in production: every story that expired an
    hour and a quarter before the audit has its final row, and the audit says none is missing."""
    due = due_final_rows(replayed, replayed.end - FINAL_ROW_AFTER)
    assert len(due) >= 5
    assert {s.id for s in due} <= final_table_ids(replayed.lake)
    report = audit.audit(lake, now=replayed.end, days=2)
    assert report.final_row_minutes == 75
    assert report.missing_final_rows == 0
    assert all(c.missing_final_rows == () for c in report.coverage)


def test_a_story_without_its_final_row_is_named_until_finalize_builds_it(
    replayed: Replayed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A final partition lost (deleted here) leaves its expired stories without their final row:
    the audit names exactly those (terminal, log entry, exit 1 past the threshold), with the
    command that builds them; `finalize` then builds them back and the audit is clean again."""
    copy = tmp_path / "lake"
    shutil.copytree(replayed.lake, copy)
    due = due_final_rows(replayed, replayed.end - FINAL_ROW_AFTER)
    story = due[-1]
    posted = story.posted_at.date()
    partition = copy / f"tables/story_final/account={story.account}/posted_date={posted}"
    shutil.rmtree(partition)
    lost = {s.id for s in due if s.account == story.account and s.posted_at.date() == posted}
    with open_lake(str(copy)) as lake:
        relaxed = {"max_missed_finals": 99, "max_missing_hours": 99}
        report = audit.audit(lake, now=replayed.end, days=2, **relaxed)
        named = {s for c in report.coverage for s in c.missing_final_rows}
        assert named == lost
        assert report.missing_final_rows == len(lost)
        assert not report.ok  # for the final rows alone
        allowed = audit.audit(
            lake, now=replayed.end, days=2, **relaxed, max_missing_final_rows=len(lost)
        )
        assert allowed.ok
        console = Console(record=True, width=200)
        render_audit(report, console)
        text = console.export_text()
        assert f"story {story.id}: no row in the final-values table" in text
        assert "ig-story-metrics finalize --days 2" in text
        caplog.set_level(logging.INFO, logger="ig_story_metrics.audit")
        log_audit(report)
        [entry] = [r for r in caplog.records if getattr(r, "event", None) == "audit"]
        assert f"{len(lost)} without their final row" in entry.getMessage()
        assert "ig-story-metrics finalize --days 2" in entry.getMessage()
        assert entry.__dict__["missing_final_rows"] == len(lost)
        finalize.finalize(lake, dict(SEED_ACCOUNTS), replayed.end, days=2)
        assert audit.audit(lake, now=replayed.end, days=2).missing_final_rows == 0
    assert partition.is_dir()


def test_cli_audit_exits_1_for_a_missing_final_row(replayed: Replayed, tmp_path: Path) -> None:
    """`audit --json` counts the stories without their final row; with the other thresholds
    relaxed it still exits 1 for them, and 0 once `--max-missing-final-rows` allows them."""
    copy = tmp_path / "lake"
    shutil.copytree(replayed.lake, copy)
    for part in copy.glob("tables/story_final/account=*/posted_date=*/*.parquet"):
        part.write_bytes(b"not parquet")  # unreadable: its stories have no final row we can read
    env = {"STORAGE_URL": str(copy)}
    relaxed = ["--max-missed-finals", "99", "--max-missing-hours", "99"]
    result = run_cli(["audit", "--days", "2", "--json", *relaxed], env, tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    due = due_final_rows(replayed, replayed.end - FINAL_ROW_AFTER)
    named = {s for c in report["coverage"] for s in c["missing_final_rows"]}
    assert {s.id for s in due} <= named
    assert report["missing_final_rows"] == len(named)
    allowed = [*relaxed, "--max-missing-final-rows", str(len(named) + 5)]
    assert run_cli(["audit", "--days", "2", *allowed], env, tmp_path).returncode == 0


def test_a_story_expired_within_the_grace_needs_no_final_row_yet() -> None:
    """Only stories expired at least FINAL_ROW_AFTER before the audit must have a final row; a
    story with its row is not named; without the final table's rows nothing is checked."""
    now = NOW + 30 * HOUR
    rows = [
        {
            "account": "NPI",
            "story_id": story,
            "posted_at": now - ago - 24 * HOUR,
            "expires_at": now - ago,
            "fetched_at": now - ago - 5 * MINUTE,
            "insights_status": "ok",
            "capture": "sweep",
        }
        for story, ago in (("old", 80 * MINUTE), ("kept", 90 * MINUTE), ("fresh", 10 * MINUTE))
    ]
    frame = SNAPSHOTS.frame(rows)
    [c] = day_coverage(frame, [now.date()], now, final_rows={"NPI": {"kept"}})
    assert c.missing_final_rows == ("old",)
    [unchecked] = day_coverage(frame, [now.date()], now)
    assert unchecked.missing_final_rows == ()
    no_grace = timedelta(0)
    [c] = day_coverage(frame, [now.date()], now, final_rows={}, final_row_after=no_grace)
    assert c.missing_final_rows == ("kept", "old", "fresh")  # by expiry


def test_a_final_row_is_found_in_the_partition_of_the_storys_last_posted_date(
    tmp_path: Path,
) -> None:
    """A listing that moved a story's timestamp across midnight places its final row by the last
    one (model/final.py): the audit looks in every posted date the snapshots give, and finds it."""
    posted = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    moved = posted + timedelta(seconds=2)
    rows = [
        {
            "account": "NPI",
            "ig_user_id": "17841400000000001",
            "story_id": "s1",
            "posted_at": at,
            "expires_at": at + 24 * HOUR,
            "fetched_at": posted + fetched,
            "insights_status": "ok",
            "capture": "hourly",
        }
        for at, fetched in ((posted, HOUR), (moved, 2 * HOUR))
    ]
    frame = SNAPSHOTS.frame(rows)
    now = posted + 27 * HOUR
    finals = final_rows(frame, {}, {"NPI": "17841400000000001"}, now)
    assert list(finals) == [("NPI", moved.date())]
    with open_lake(str(tmp_path / "lake")) as lake:
        for (account, day), found in finals.items():
            lake.replace_partition(STORY_FINAL, account, day, STORY_FINAL.frame(found))
        stored = audit.stored_final_rows(lake, frame, [now.date()], now)
    assert stored == {"NPI": {"s1"}}
    [c] = day_coverage(frame, [now.date()], now, final_rows=stored)
    assert c.expired == 1
    assert c.missing_final_rows == ()


def test_cli_audit_of_one_account(replayed: Replayed, tmp_path: Path) -> None:
    """`audit --account NAME` covers that account only; a name that cannot be an account's is one
    line and exit 2, before anything is read."""
    env = {"STORAGE_URL": str(replayed.lake)}
    result = run_cli(["audit", "--days", "2", "--json", "--account", "LT"], env, tmp_path)
    report = json.loads(result.stdout)
    assert {c["account"] for c in report["coverage"]} == {"LT"}
    everyone = json.loads(run_cli(["audit", "--days", "2", "--json"], env, tmp_path).stdout)
    assert {c["account"] for c in everyone["coverage"]} == set(SEED_ACCOUNTS)
    bad = run_cli(["audit", "--account", "../x"], env, tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --account '../x'")
    assert "Traceback" not in bad.stderr
