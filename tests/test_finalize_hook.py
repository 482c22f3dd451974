"""The hourly run and the sweep keep the final-values table current (jobs/finalize.Finals), and
a failure there is logged without failing the run; `ig-story-metrics finalize` on the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.clock import Deadline
from ig_story_metrics.jobs import finalize as finalize_module
from ig_story_metrics.jobs import hourly, sweep
from ig_story_metrics.jobs.finalize import finalize
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.snapshot import SNAPSHOTS, snapshot_row
from ig_story_metrics.model.story import Story
from ig_story_metrics.settings import load_accounts, load_settings, resolve_tokens, select_accounts
from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer
from ig_story_metrics.storage import Lake, open_lake
from ig_story_metrics.storage.layout import table_key
from ig_story_metrics.storage.local import LocalBackend

from .conftest import FAST, NOW, env_for, frozen, run, run_cli, write_accounts

POSTED = NOW - timedelta(hours=30)  # expired 6 hours before NOW
FINAL = "tables/story_final/account=NPI/posted_date={}/story_final.parquet"


def seed_expired_story(lake_root: Path, posted: datetime = POSTED) -> None:
    """Snapshots of a story of NPI that expired 6 hours before NOW, its last one 4 minutes before."""
    story = Story("expired-1", posted, "IMAGE", "STORY")
    rows = [
        snapshot_row(
            account="NPI",
            ig_user_id=SEED_ACCOUNTS["NPI"],
            story=story,
            fetched_at=posted + timedelta(hours=23, minutes=56 - 60 * back),
            run_id=f"r{back}",
            api_version="v25.0",
            metrics={"reach": 50 - back},
            status="ok",
        )
        for back in range(3)
    ]
    with open_lake(str(lake_root)) as lake:
        for (day,), part in SNAPSHOTS.frame(rows).group_by(pl.col("fetched_at").dt.date()):
            lake.append(SNAPSHOTS, "NPI", day, part)  # type: ignore[arg-type]


def test_hourly_run_finalizes_stories_expired_since(sim: SimulatorServer, tmp_path: Path) -> None:
    """After an hourly run, a story that expired today has its row in the final table."""
    seed_expired_story(tmp_path / "lake")
    report = run(sim, tmp_path)
    assert report.ok
    final = pl.read_parquet(tmp_path / "lake" / FINAL.format(POSTED.date()))
    assert final["story_id"].to_list() == ["expired-1"]
    assert final["reach"].to_list() == [50]
    assert final["complete"].to_list() == [True]


def test_sweep_finalizes_too(sim: SimulatorServer, tmp_path: Path) -> None:
    """The sweep's entry point runs the same hook."""
    seed_expired_story(tmp_path / "lake")
    accounts = write_accounts(tmp_path / "accounts.toml")
    settings = load_settings(env_for(sim, tmp_path, accounts))
    chosen = select_accounts(load_accounts(accounts), [], all_accounts=True)
    sweep.run(settings, chosen, resolve_tokens(settings, chosen, env={}), clock=frozen())
    assert (tmp_path / "lake" / FINAL.format(POSTED.date())).exists()


def test_a_failing_finalize_never_fails_the_run(
    sim: SimulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`tables` is a file, so the final table cannot be written: the run is ok, one ERROR line
    (no traceback) says so."""
    seed_expired_story(tmp_path / "lake")
    (tmp_path / "lake" / "tables").write_text("in the way")
    with caplog.at_level(logging.ERROR, logger="ig_story_metrics.finalize"):
        report = run(sim, tmp_path)
    assert report.ok
    (failed,) = [r for r in caplog.records if getattr(r, "event", None) == "finalize_failed"]
    assert failed.exc_info is None  # a storage failure is one line, not a traceback
    assert "tables" in failed.getMessage()


def test_cli_finalize(sim: SimulatorServer, tmp_path: Path) -> None:
    """`ig-story-metrics finalize --days 3 --json` builds the table and prints its summary;
    `--days 0` is a usage error (exit 2)."""
    posted = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)  # the CLI's clock
    seed_expired_story(tmp_path / "lake", posted)
    accounts = write_accounts(tmp_path / "accounts.toml")
    env = env_for(sim, tmp_path, accounts)
    done = run_cli(["finalize", "--days", "3", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["stories"], summary["complete"], summary["partitions_written"]) == (1, 1, 1)
    assert (tmp_path / "lake" / FINAL.format(posted.date())).exists()
    bad = run_cli(["finalize", "--days", "0"], env, tmp_path)
    assert bad.returncode == 2


def test_no_finalize_for_accounts_whose_rows_were_not_stored(
    sim: SimulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the run could not store an account's rows, the hook leaves the failing lake alone
    (the answer must not wait on it twice): no finalize at all when no account was stored."""
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "Instagram").write_text("in the way")
    with caplog.at_level(logging.INFO, logger="ig_story_metrics.finalize"):
        report = run(sim, tmp_path)
    assert not report.ok
    assert all(a.error and a.error.startswith("storage") for a in report.accounts)
    events = {getattr(r, "event", None) for r in caplog.records}
    assert not events & {"finalized", "finalize_failed"}


class CountingBackend(LocalBackend):
    """A local folder that counts the reads of each key and the listings of each prefix."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()
        self.listed: Counter[str] = Counter()

    def read(self, key: str, *, deadline: Deadline | None = None) -> tuple[bytes | None, int]:
        self.reads[key] += 1
        return super().read(key, deadline=deadline)

    def keys(
        self,
        prefix: str,
        *,
        deadline: Deadline | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[str]:
        self.listed[prefix] += 1
        return super().keys(prefix, deadline=deadline, start=start, end=end)


@pytest.mark.parametrize("chunk", [100, 2])
def test_the_hook_takes_the_partition_just_written_and_reads_only_yesterday(
    sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Each account's final values are built from its day's file as the run wrote it: the run
    reads that file once (to merge into it), not a second time after its last write; yesterday's
    file, which the run did not write, is read once. The table is the one `finalize` builds,
    whether the 5 accounts are finalized together or two at a time, as they are stored."""
    monkeypatch.setattr(finalize_module, "HOOK_CHUNK", chunk)
    seed_expired_story(tmp_path / "lake")
    backend = CountingBackend(tmp_path / "lake")
    accounts = write_accounts(tmp_path / "accounts.toml")
    settings = load_settings(env_for(sim, tmp_path, accounts))
    chosen = select_accounts(load_accounts(accounts), [], all_accounts=True)
    tokens = resolve_tokens(settings, chosen, env={})
    report = hourly.run(settings, chosen, tokens, lake=Lake(backend), clock=frozen(), policy=FAST)
    assert report.ok
    today, yesterday = NOW.date(), NOW.date() - timedelta(days=1)
    for account in SEED_ACCOUNTS:
        assert backend.reads[table_key(SNAPSHOTS, account, today)] == 1
        assert backend.reads[table_key(SNAPSHOTS, account, yesterday)] == 1
    hooked = pl.read_parquet(tmp_path / "lake" / FINAL.format(POSTED.date()))
    with open_lake(str(tmp_path / "lake")) as lake:
        rebuilt = finalize(lake, {"NPI": SEED_ACCOUNTS["NPI"]}, NOW, days=1)
    assert rebuilt.written == []  # the hook had written the same bytes already
    assert hooked["story_id"].to_list() == ["expired-1"]


@pytest.mark.parametrize("stored", [False, True])
def test_an_account_left_alone_is_finalized_only_when_the_run_stores_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: bool
) -> None:
    """An account the hook was told to leave alone costs nothing when the run stores nothing for
    it; rows stored for it after all are finalized, from the partition just written."""
    calls: list[list[str]] = []
    real = finalize_module.finalize

    def counting(lake: Lake, accounts: dict[str, str], *args: object, **kw: object) -> object:
        calls.append(sorted(accounts))
        return real(lake, accounts, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(finalize_module, "finalize", counting)
    seed_expired_story(tmp_path / "lake")
    npi, lt = Account("NPI", SEED_ACCOUNTS["NPI"]), Account("LT", SEED_ACCOUNTS["LT"])
    with open_lake(str(tmp_path / "lake")) as lake:
        hook = finalize_module.Finals(lake, frozen())
        hook.leave_alone(["NPI"])
        written = lake.read(SNAPSHOTS, "NPI", NOW.date()) if stored else None

        async def the_run() -> finalize_module.FinalizeResult | None:
            hook.after_store(npi, NOW.date(), written)
            hook.after_store(lt, NOW.date(), None)
            return await hook.finish()

        result = asyncio.run(the_run())
    assert calls == [["LT", "NPI"] if stored else ["LT"]]
    assert result is not None
    assert result.stories == (1 if stored else 0)  # NPI's expired story, when finalized
    assert hook.failed == 0
