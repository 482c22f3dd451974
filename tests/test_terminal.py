"""The run's summary on a terminal: every account of a few; for a fleet, the failed and warned
accounts by name and the rest summed up (a thousand rows took 1.4 s of CPU to draw)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from ig_story_metrics.report.models import AccountReport, RunReport
from ig_story_metrics.report.terminal import FLEET_ROWS, render_run


def _report(accounts: int, failed: set[int], warned: dict[int, int]) -> RunReport:
    reports = []
    for i in range(accounts):
        a = AccountReport(account=f"acct{i:04d}", ig_user_id=str(17841400000 + i), listed=3)
        a.statuses = {"ok": 2, "not_enough_viewers": 1}
        a.stored_rows = 3
        a.files = [f"/lake/acct{i:04d}.parquet", f"/lake/acct{i:04d}.schema.json"]
        if i in failed:
            a.ok, a.error = False, f"Graph API: token of acct{i:04d} expired"
        a.warnings = [f"warning {k} of acct{i:04d}" for k in range(warned.get(i, 0))]
        reports.append(a)
    return RunReport(
        run_id="20261130T140000Z-abcdef12",
        fetched_at=datetime(2026, 11, 30, 14, tzinfo=UTC),
        api_version="v25.0",
        storage_url="/lake",
        accounts=reports,
    )


def _text(report: RunReport) -> str:
    console = Console(record=True, width=200)
    render_run(report, console)
    return console.export_text()


def test_a_few_accounts_are_shown_each_with_every_file_and_warning() -> None:
    text = _text(_report(5, failed={3}, warned={1: 2}))
    assert all(f"acct{i:04d}" in text for i in range(5))
    assert text.count(".parquet") == 5
    assert "token of acct0003 expired" in text
    assert "warning 1 of acct0001" in text
    assert "more accounts" not in text


def test_a_fleet_shows_its_failed_and_warned_accounts_and_sums_up_the_rest() -> None:
    failed, warned = {40, 55}, {7: FLEET_ROWS + 5}
    text = _text(_report(60, failed, warned))
    lines = text.splitlines()
    # the failed and warned accounts by name, first; FLEET_ROWS rows in all before the sums
    assert "token of acct0040 expired" in text
    assert "token of acct0055 expired" in text
    assert "acct0007" in text
    named = [line for line in lines if "acct0" in line and "warning" not in line]
    assert len(named) == FLEET_ROWS
    assert named[0].split()[1] == "acct0040"  # the table's border comes first
    rest = next(line for line in lines if "40 more accounts" in line)
    cells = [cell.strip() for cell in rest.split("│")]
    assert cells[2:6] == ["120", "80", "40", "0"]  # 40 accounts x (3 listed, 2, 1, 0)
    total = next(line for line in lines if "all 60 accounts" in line)
    assert "2 FAILED" in total
    assert "wrote 120 files under /lake" in text
    assert ".parquet" not in text
    assert sum(line.startswith("warning acct") for line in lines) == FLEET_ROWS
    assert "and 5 more warnings" in text
