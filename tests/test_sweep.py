"""The sweep, over real sockets on a virtual clock: the simulator and the jobs read the same clock,
the client speaks HTTP to the simulator on loopback, the rows land in a real local lake."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from ig_story_metrics.clock import VirtualClock
from ig_story_metrics.jobs import hourly, sweep
from ig_story_metrics.jobs.finalize import finalize
from ig_story_metrics.model.expiry import LakePlan, due, lake_plan
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.model.story import Story
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.report.terminal import render_run
from ig_story_metrics.settings import Settings, load_accounts, resolve_tokens, select_accounts
from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer, World
from ig_story_metrics.simulator.world import SimStory
from ig_story_metrics.storage import Lake, StorageError, open_lake
from ig_story_metrics.storage.layout import snapshot_key, snapshot_schema_key

from .conftest import NOW, SECRET_TOKEN, env_for, make_server, run_cli, settings_for
from .test_finalize_hook import FINAL, CountingBackend

WINDOW = timedelta(minutes=12)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@pytest.fixture
def clock() -> VirtualClock:
    """The shared clock, an hour before the moments the tests look for (it only moves forward)."""
    return VirtualClock(NOW - timedelta(hours=1))


@pytest.fixture
def sim(clock: VirtualClock) -> Iterator[SimulatorServer]:
    """The simulator on a free loopback port, reading the virtual clock."""
    with make_server(clock=clock) as server:
        yield server


class Jobs:
    """The production jobs against the simulator, on the shared virtual clock."""

    def __init__(self, settings: Settings, accounts: Path, clock: VirtualClock) -> None:
        self.settings = settings
        self.accounts = select_accounts(load_accounts(accounts), [], all_accounts=True)
        self.tokens = resolve_tokens(settings, self.accounts, env={})
        self.clock = clock
        self.lake: Lake = open_lake(settings.storage_url)

    def hourly(self, at: datetime) -> RunReport:
        self.clock.set(at)
        return hourly.run(self.settings, self.accounts, self.tokens, clock=self.clock)

    def sweep(self, at: datetime, plan: sweep.Plan = "lake") -> RunReport:
        self.clock.set(at)
        return sweep.run(self.settings, self.accounts, self.tokens, clock=self.clock, plan=plan)

    def rows(self, account: str, at: datetime) -> pl.DataFrame:
        return self.lake.read(SNAPSHOTS, account, at.date())


@pytest.fixture
def jobs(sim: SimulatorServer, tmp_path: Path, accounts_file: Path, clock: VirtualClock) -> Jobs:
    return Jobs(settings_for(sim, tmp_path, accounts_file), accounts_file, clock)


def stories_around(world: World, account: str, start: datetime, hours: int) -> list[SimStory]:
    """Every story of `account` live at some full hour in `[start, start + hours]`."""
    found = {
        s.id: s
        for h in range(hours + 1)
        for s in world.live_stories(account, start + timedelta(hours=h))
    }
    return sorted(found.values(), key=lambda s: s.expires_at)


def pair_5_and_30(world: World) -> tuple[datetime, SimStory, SimStory]:
    """A moment at which one story expires in 5 minutes and another in 27 to 33 minutes."""
    stories = sorted(
        (s for a in world.accounts for s in stories_around(world, a, NOW, 48)),
        key=lambda s: s.expires_at,
    )
    for a in stories:
        moment = a.expires_at - 5 * MINUTE
        if moment < NOW:
            continue
        for b in stories:
            if 27 * MINUTE <= b.expires_at - moment <= 33 * MINUTE:
                return moment, a, b
    raise AssertionError("no such pair in 48 simulated hours")


def empty_moment(world: World, after: datetime) -> datetime:
    """The first minute after `after` (past :05 of its hour) at which no story of any account
    expires within the sweep window."""
    moment = after.replace(minute=5, second=0, microsecond=0)
    if moment < after:
        moment += timedelta(hours=1)
    ends = [s.expires_at for a in world.accounts for s in stories_around(world, a, after, 6)]
    while any(moment < end <= moment + WINDOW for end in ends):
        moment += MINUTE
    return moment


@pytest.mark.parametrize("plan", ["list", "lake"])
def test_story_expiring_in_5_minutes_is_swept_and_one_in_30_is_not(
    jobs: Jobs, sim: SimulatorServer, plan: sweep.Plan
) -> None:
    """A sweep snapshots exactly the stories expiring within 12 minutes, with the simulator's
    values at that moment and capture "sweep"; a story 30 minutes from expiry is left alone."""
    moment, soon, later = pair_5_and_30(sim.simulator.world)
    world = sim.simulator.world
    if plan == "lake":
        jobs.hourly(moment.replace(minute=0, second=0, microsecond=0))
    before = jobs.rows(soon.account, moment).height
    report = jobs.sweep(moment, plan)
    assert report.ok
    assert report.capture == "sweep"
    for account in report.accounts:
        assert account.planned_from == ("lake" if plan == "lake" else "listing")
        expected = {
            s.id
            for s in world.live_stories(account.account, moment)
            if s.expires_at <= moment + WINDOW
        }
        swept = jobs.rows(account.account, moment).filter(pl.col("run_id") == report.run_id)
        assert set(swept["story_id"]) == expected
        assert account.stored_rows == len(expected)
        assert account.failed == 0
        assert set(swept["capture"]) <= {"sweep"}
        assert swept["fetched_at"].unique().to_list() in ([moment], [])
    swept = jobs.rows(soon.account, moment).filter(pl.col("run_id") == report.run_id)
    assert soon.id in set(swept["story_id"])
    assert jobs.rows(soon.account, moment).height == before + swept.height
    assert later in world.live_stories(later.account, moment)  # live and listed, not due
    others = jobs.rows(later.account, moment).filter(pl.col("run_id") == report.run_id)
    assert later.id not in set(others["story_id"])
    row = swept.filter(pl.col("story_id") == soon.id).row(0, named=True)
    truth = sim.simulator.truth(soon.id, moment)
    assert truth is not None
    assert {k: row[k] for k in truth} == truth


def test_sweep_at_an_empty_moment_lists_and_writes_nothing(
    jobs: Jobs, sim: SimulatorServer, tmp_path: Path
) -> None:
    """With nothing due, a listing sweep makes one listing call per account and writes no file."""
    moment = empty_moment(sim.simulator.world, NOW)
    report = jobs.sweep(moment, "list")
    assert report.ok
    assert [a.operations for a in report.accounts] == [1] * len(report.accounts)
    assert all(a.listed > 0 and a.not_due == a.listed for a in report.accounts)
    assert all(a.stored_rows == 0 and a.files == [] and a.failed == 0 for a in report.accounts)
    assert not (tmp_path / "lake").exists()


def test_planned_sweep_at_an_empty_moment_calls_nothing_and_writes_nothing(
    jobs: Jobs, sim: SimulatorServer
) -> None:
    """After a fresh hourly run, a sweep with nothing due plans from the lake: no Graph call at
    all, and every file stays as the hourly run left it."""
    moment = empty_moment(sim.simulator.world, NOW)
    jobs.hourly(moment.replace(minute=0))
    paths = sorted(Path(jobs.settings.storage_url).rglob("*"))
    stamps = [p.stat().st_mtime_ns for p in paths]
    report = jobs.sweep(moment)
    assert all(a.planned_from == "lake" for a in report.accounts)
    assert sum(a.operations + a.http_requests for a in report.accounts) == 0
    assert sorted(Path(jobs.settings.storage_url).rglob("*")) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_sweep_lists_when_the_last_hourly_listing_is_stale(
    jobs: Jobs, sim: SimulatorServer
) -> None:
    """An hourly listing older than 75 minutes is not trusted: the sweep lists (1 call each)."""
    moment = empty_moment(sim.simulator.world, NOW + timedelta(hours=2))
    jobs.hourly(moment - timedelta(hours=2))
    report = jobs.sweep(moment)
    assert all(a.planned_from == "listing" and a.operations == 1 for a in report.accounts)


def test_unreadable_lake_is_a_warning_and_the_sweep_lists(jobs: Jobs, sim: SimulatorServer) -> None:
    """A daily file that cannot be read does not stop the sweep: it lists, and says why."""
    moment = empty_moment(sim.simulator.world, NOW)
    jobs.hourly(moment.replace(minute=0))
    broken = Path(jobs.settings.storage_url) / snapshot_key("LT", moment.date())
    broken.write_bytes(b"not parquet")
    report = jobs.sweep(moment)
    lt = next(a for a in report.accounts if a.account == "LT")
    assert lt.ok
    assert lt.planned_from == "listing"
    assert lt.operations == 1
    assert any("could not plan the sweep from the lake" in w for w in lt.warnings)
    assert all(a.planned_from == "lake" for a in report.accounts if a.account != "LT")
    assert broken.read_bytes() == b"not parquet"


def test_hourly_rows_say_hourly_and_older_files_merge_with_null(jobs: Jobs, tmp_path: Path) -> None:
    """Rows of the hourly run carry capture "hourly"; a file written before the column existed
    keeps its rows, which read the new column as null."""
    old = SNAPSHOTS.frame([]).drop("capture")
    old = pl.DataFrame({name: [None] for name in old.columns}, schema=old.schema).with_columns(
        account=pl.lit("NPI"),
        ig_user_id=pl.lit("1"),
        story_id=pl.lit("180000"),
        posted_at=pl.lit(NOW - timedelta(hours=2)),
        expires_at=pl.lit(NOW + timedelta(hours=22)),
        fetched_at=pl.lit(NOW - timedelta(hours=1)),
        story_age_hours=pl.lit(1.0),
        insights_status=pl.lit("ok"),
        run_id=pl.lit("old-run"),
        api_version=pl.lit("v25.0"),
    )
    path = Path(jobs.settings.storage_url) / snapshot_key("NPI", NOW.date())
    path.parent.mkdir(parents=True)
    old.write_parquet(path)
    report = jobs.hourly(NOW)
    merged = pl.read_parquet(path)
    assert merged.filter(pl.col("run_id") == "old-run")["capture"].to_list() == [None]
    new = merged.filter(pl.col("run_id") == report.run_id)
    assert new.height > 0
    assert set(new["capture"]) == {"hourly"}
    schema_path = Path(jobs.settings.storage_url) / snapshot_schema_key("NPI", NOW.date())
    schema = json.loads(schema_path.read_text())
    assert schema["properties"]["capture"]["enum"] == ["hourly", "sweep", None]


def test_due_is_the_half_open_window_oldest_first() -> None:
    """Due: expiring after now and at most `window` later (a story expiring now is gone)."""
    base = NOW - timedelta(hours=24)
    stories = [Story(str(n), base + timedelta(minutes=m)) for n, m in enumerate((0, 1, 12, 13))]
    assert [s.id for s in due(reversed(stories), NOW, WINDOW)] == ["1", "2"]


def test_plan_uses_only_the_latest_hourly_listing() -> None:
    """A plan comes from the latest hourly run's rows (not sweeps, not older runs)."""
    base = NOW - timedelta(hours=24)
    rows = [
        ("gone", base + 3 * MINUTE, NOW - 2 * timedelta(hours=1), "hourly"),
        ("due", base + 4 * MINUTE, NOW - 5 * MINUTE, "hourly"),
        ("later", base + 40 * MINUTE, NOW - 5 * MINUTE, "hourly"),
        ("swept", base + 5 * MINUTE, NOW - 1 * MINUTE, "sweep"),
    ]
    frame = SNAPSHOTS.frame(
        {"story_id": s, "posted_at": p, "expires_at": p + timedelta(hours=24), "fetched_at": f,
         "capture": c}
        for s, p, f, c in rows
    )  # fmt: skip
    plan = lake_plan(frame, NOW, WINDOW)
    assert plan is not None
    assert [s.id for s in plan.due] == ["due"]
    assert lake_plan(frame, NOW + timedelta(hours=2), WINDOW) is None


def test_virtual_clock_moves_only_forward() -> None:
    """The shared clock stands still until set, and refuses to go back or to be naive."""
    clock = VirtualClock(NOW)
    assert clock() == clock() == NOW
    clock.advance(MINUTE)
    assert clock() == NOW + MINUTE
    with pytest.raises(ValueError, match="does not go back"):
        clock.set(NOW)
    with pytest.raises(ValueError, match="aware"):
        clock.set(NOW.replace(tzinfo=None))


def test_cli_sweep_prints_a_sweep_report(tmp_path: Path, accounts_file: Path) -> None:
    """`ig-story-metrics sweep --all --list --json` lists every account and exits 0."""
    with make_server(clock=lambda: datetime.now(NOW.tzinfo)) as server:
        result = run_cli(
            ["sweep", "--all", "--list", "--json"],
            env_for(server, tmp_path, accounts_file),
            tmp_path,
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["capture"] == "sweep"
    assert [a["operations"] >= 1 for a in report["accounts"]] == [True] * 5
    assert SECRET_TOKEN not in result.stdout + result.stderr


def test_sweep_budget_fits_a_10_minute_schedule(jobs: Jobs) -> None:
    """A sweep's budget is the run budget capped at 240 s (it must end before the next sweep);
    a smaller configured budget is kept."""
    assert sweep.sweep_settings(jobs.settings).run_budget_seconds == 240
    small = jobs.settings.model_copy(update={"run_budget_seconds": 30.0})
    assert sweep.sweep_settings(small).run_budget_seconds == 30


def test_terminal_shows_a_sweep_as_a_sweep(jobs: Jobs, sim: SimulatorServer) -> None:
    """A sweep's table says sweep, the due and known stories and where they came from; a sweep
    that wrote nothing says nothing was due."""
    moment = empty_moment(sim.simulator.world, NOW)
    console = Console(record=True, width=120)
    render_run(jobs.sweep(moment, "list"), console)
    text = console.export_text()
    assert text.lstrip().startswith("sweep ")
    assert "0 / " in text
    assert "(listing)" in text
    assert "wrote no files (nothing due)" in text


def test_a_plan_after_midnight_reads_both_days_and_takes_each_storys_last_row(
    tmp_path: Path,
) -> None:
    """Twenty minutes into a UTC day the latest hourly listing may be yesterday's or today's:
    both files are read. Of the latest listing's rows, a story listed twice gives its last row
    (its fields come from it); a file older than the `capture` column (null) is hourly; a row
    fetched after `now` and a story without a posting time are never planned."""
    lake = open_lake(str(tmp_path / "lake"))
    midnight = datetime(2026, 11, 25, tzinfo=NOW.tzinfo)
    now = midnight + 20 * MINUTE
    posted = now - timedelta(hours=24) + 5 * MINUTE  # expires 5 minutes after `now`

    def row(
        story: str, fetched: datetime, capture: str | None, **more: object
    ) -> dict[str, object]:
        return {"story_id": story, "posted_at": posted, "fetched_at": fetched, "capture": capture,
                "run_id": f"{fetched:%H%M}{capture}", **more}  # fmt: skip

    early = midnight + MINUTE / 2  # before today's first run: yesterday's 23:00 listing is latest
    yesterday = [
        row(
            "old", midnight - 60 * MINUTE, "hourly", posted_at=early + 6 * MINUTE - 24 * 60 * MINUTE
        )
    ]
    today = [
        row("a", midnight + MINUTE, None, caption="first"),
        row("a", midnight + MINUTE, None, caption="second", media_type="VIDEO"),
        row("b", midnight + MINUTE, None, posted_at=None),
        row("c", now + MINUTE, "hourly"),
        row("d", midnight + 2 * MINUTE, "sweep"),
    ]
    for day, rows in ((midnight - MINUTE, yesterday), (midnight, today)):
        lake.append(SNAPSHOTS, "NPI", day.date(), SNAPSHOTS.frame(rows))
    (plan,) = sweep.plan_accounts(lake, ["NPI"], now, WINDOW)
    assert isinstance(plan, LakePlan)
    assert [(s.id, s.caption, s.media_type) for s in plan.due] == [("a", "second", "VIDEO")]
    (from_yesterday,) = sweep.plan_accounts(lake, ["NPI"], early, WINDOW)
    assert isinstance(from_yesterday, LakePlan)
    assert [s.id for s in from_yesterday.due] == ["old"]


def test_accounts_planned_together_are_each_planned_as_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep plans its accounts a chunk at a time, their files read together: each account's
    plan is the one its own files give (after midnight both days count: A4 listed only
    yesterday), in the order of the accounts; one account's unreadable file is its own error,
    not its chunk's."""
    monkeypatch.setattr(sweep, "PLAN_CHUNK", 2)
    lake = open_lake(str(tmp_path / "lake"))
    midnight = datetime(2026, 11, 25, tzinfo=NOW.tzinfo)
    now = midnight + 20 * MINUTE
    names = [f"A{n}" for n in range(5)]
    for n, name in enumerate(names):
        for day, fetched in ((midnight - MINUTE, midnight - 50 * MINUTE), (midnight, midnight)):
            if name == "A4" and day == midnight:
                continue
            rows = [
                {"story_id": f"{name}-{day:%d}-{k}", "capture": "hourly", "run_id": f"{fetched}",
                 "fetched_at": fetched, "posted_at": now - DAY + (k * 5 + n) * MINUTE}
                for k in range(3)
            ]  # fmt: skip
            lake.append(SNAPSHOTS, name, day.date(), SNAPSHOTS.frame(rows))
    broken = tmp_path / "lake" / snapshot_key("A2", midnight.date())
    broken.write_bytes(b"not parquet")
    plans = sweep.plan_accounts(lake, names, now, WINDOW)
    due_ids = {  # expiring 5k + n minutes after now: due within 12 minutes, not at 0
        "A0": ["A0-25-1", "A0-25-2"],
        "A1": ["A1-25-0", "A1-25-1", "A1-25-2"],
        "A3": ["A3-25-0", "A3-25-1"],
        "A4": ["A4-24-0", "A4-24-1"],
    }
    assert len(plans) == len(names)
    for name, plan in zip(names, plans, strict=True):
        if name == "A2":
            assert isinstance(plan, StorageError)
            assert "not a readable Parquet file" in str(plan)
            continue
        assert isinstance(plan, LakePlan)
        assert [s.id for s in plan.due] == due_ids[name]
        frames = [
            lake.read(SNAPSHOTS, name, day) for day in (midnight.date() - DAY, midnight.date())
        ]
        assert plan == lake_plan(pl.concat(frames), now, WINDOW)


def test_a_plan_says_whether_a_story_of_its_listing_has_expired_since(tmp_path: Path) -> None:
    """A plan from the lake says which stories are due and whether a story of the latest hourly
    listing has expired since it was taken (then the account's final values may have changed)."""
    lake = open_lake(str(tmp_path / "lake"))
    listed = NOW - 20 * MINUTE
    expiring = {"due": 5, "quiet": 90, "gone": -10, "both": (-10, 5)}  # minutes from NOW
    for name, minutes in expiring.items():
        rows = [
            {"story_id": f"{name}-{k}", "capture": "hourly", "run_id": "r", "fetched_at": listed,
             "posted_at": NOW - DAY + m * MINUTE}
            for k, m in enumerate(minutes if isinstance(minutes, tuple) else (minutes,))
        ]  # fmt: skip
        lake.append(SNAPSHOTS, name, NOW.date(), SNAPSHOTS.frame(rows))
    plans = sweep.plan_accounts(lake, list(expiring), NOW, WINDOW)
    assert [(len(p.due), p.expired) if isinstance(p, LakePlan) else p for p in plans] == [
        (1, False),
        (0, False),
        (0, True),
        (1, True),
    ]


def quiet_moment(world: World, after: datetime) -> tuple[datetime, list[SimStory]]:
    """A moment past :05 of an hour after `after` at which no story of any account is due, some
    have expired since the hour began (returned), and some account had none expire."""
    moment = after.replace(minute=5, second=0, microsecond=0) + timedelta(hours=1)
    stories = [s for a in world.accounts for s in stories_around(world, a, after, 30)]
    for _ in range(24 * 60):
        hour = moment.replace(minute=0)
        expired = [s for s in stories if hour < s.expires_at <= moment]
        if (
            expired
            and not any(moment < s.expires_at <= moment + WINDOW for s in stories)
            and {s.account for s in expired} != set(world.accounts)
        ):
            return moment, expired
        moment += MINUTE
    raise AssertionError("no such moment in a day")


def test_a_sweep_leaves_alone_the_final_values_of_accounts_with_no_story_expired_since(
    jobs: Jobs, sim: SimulatorServer
) -> None:
    """With nothing due, an account with no story expired since the hourly run is left alone:
    its day file, read to plan it, is its only read (no read of yesterday's file, no listing of
    its webhook deliveries, no final table written). One with a story expired since has its
    final values built as in the hourly run (its day read again, yesterday's file, its
    deliveries), the table `finalize` builds."""
    moment, expired = quiet_moment(sim.simulator.world, NOW)
    gone = {story.account for story in expired}
    root = Path(jobs.settings.storage_url)
    jobs.hourly(moment.replace(minute=0))
    shutil.rmtree(root / "tables", ignore_errors=True)  # what the sweep writes, it writes anew
    backend = CountingBackend(root)
    jobs.clock.set(moment)
    report = sweep.run(
        jobs.settings, jobs.accounts, jobs.tokens, lake=Lake(backend), clock=jobs.clock
    )
    assert report.ok
    assert all(a.planned_from == "lake" and a.stored_rows == 0 for a in report.accounts)
    for account in SEED_ACCOUNTS:
        assert backend.reads[snapshot_key(account, moment.date())] == 1 + (account in gone)
        assert backend.reads[snapshot_key(account, moment.date() - DAY)] == (account in gone)
        listed = any(f"/{account}/" in f"/{prefix}/" for prefix in backend.listed)
        assert listed == (account in gone)
        assert (root / f"tables/story_final/account={account}").exists() == (account in gone)
    for story in expired:
        final = root / FINAL.replace("NPI", story.account).format(story.posted_at.date())
        assert story.id in set(pl.read_parquet(final)["story_id"])
    ids = {a.name: a.ig_user_id for a in jobs.accounts if a.name in gone}
    assert finalize(jobs.lake, ids, moment, days=1).written == []


def test_a_failing_finalize_in_a_sweep_never_fails_it(
    jobs: Jobs, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    """`tables` is a file: the final values of the accounts with a story expired since the hourly
    run cannot be written; the sweep is ok and one ERROR line (no traceback) counts those
    accounts, and only those (the others were left alone)."""
    moment, expired = quiet_moment(sim.simulator.world, NOW)
    gone = {story.account for story in expired}
    root = Path(jobs.settings.storage_url)
    jobs.hourly(moment.replace(minute=0))
    shutil.rmtree(root / "tables", ignore_errors=True)
    (root / "tables").write_text("in the way")
    with caplog.at_level(logging.ERROR, logger="ig_story_metrics.finalize"):
        report = jobs.sweep(moment)
    assert report.ok
    (failed,) = [r for r in caplog.records if getattr(r, "event", None) == "finalize_failed"]
    assert failed.exc_info is None
    assert f"({len(gone)} accounts without final values)" in failed.getMessage()


def test_a_story_expiring_just_before_midnight_gets_its_final_row_after_midnight(
    jobs: Jobs, sim: SimulatorServer
) -> None:
    """A story that expires after the day's last sweep and before midnight is final by the first
    run after midnight: the hooks' final values cover the expiries since the previous run, which
    can be yesterday's."""
    world = sim.simulator.world
    late = next(
        s
        for a in world.accounts
        for s in stories_around(world, a, NOW, 72)
        if s.expires_at > NOW + DAY and s.expires_at.hour == 23 and s.expires_at.minute >= 10
    )
    midnight = (late.expires_at + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    jobs.hourly(midnight - timedelta(hours=1))
    assert jobs.sweep(late.expires_at - 3 * MINUTE).ok  # the story is due: its last snapshot
    jobs.hourly(midnight)
    final = Path(jobs.settings.storage_url) / (
        f"tables/story_final/account={late.account}/posted_date={late.posted_at.date()}"
        "/story_final.parquet"
    )
    assert final.exists()
    assert late.id in set(pl.read_parquet(final)["story_id"])
