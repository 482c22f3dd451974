"""The audit: read the snapshots of the last days back from the lake and report their coverage.

`audit()` reads every account's daily files (local folder or bucket) for the chosen days plus the
day before (where the first day's stories were posted and first seen), and computes per account and
UTC day what `model.coverage` defines; it reads the final-values table's partitions of the stories
that expired then, to name those without their final row. `daily_audit()` is the Cloud Function's:
after the first hourly run of a UTC day it audits the day that just ended and logs one `audit`
entry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, timedelta

import polars as pl

from ig_story_metrics.model.coverage import (
    FINAL_ROW_AFTER,
    FINAL_WITHIN,
    LATE_AFTER,
    day_coverage,
    final_rows_due,
)
from ig_story_metrics.model.final import STORY_FINAL
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.report.audit import AuditReport, log_audit
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.scan import (
    day_range,
    read_partitions,
    read_snapshots,
    snapshot_accounts,
)


def audit(
    lake: Lake,
    *,
    now: datetime,
    days: int = 2,
    final_within: timedelta = FINAL_WITHIN,
    late_after: timedelta = LATE_AFTER,
    accounts: Sequence[str] | None = None,
    max_missed_finals: int = 0,
    max_missing_hours: int = 0,
    max_missing_final_rows: int = 0,
    final_row_after: timedelta = FINAL_ROW_AFTER,
    until_day_before: bool = False,
) -> AuditReport:
    """Coverage of the last `days` UTC days up to `now` (today included, unless
    `until_day_before`), for `accounts` (default: every account in the lake). A story that
    expired at least `final_row_after` before `now` must have its row in the final table."""
    frame, chosen = read_days(
        lake, now=now, days=days, accounts=accounts, until_day_before=until_day_before
    )
    report = report_for(
        frame,
        lake.url(""),
        now=now,
        days=chosen,
        final_within=final_within,
        late_after=late_after,
        accounts=accounts or (),
        max_missed_finals=max_missed_finals,
        max_missing_hours=max_missing_hours,
        max_missing_final_rows=max_missing_final_rows,
        final_rows=stored_final_rows(lake, frame, chosen, now, final_row_after),
        final_row_after=final_row_after,
    )
    names = snapshot_accounts(lake) if accounts is None else list(accounts)
    report.quarantined = [url for name in names for url in lake.quarantined(SNAPSHOTS, name)]
    return report


def read_days(
    lake: Lake,
    *,
    now: datetime,
    days: int,
    accounts: Sequence[str] | None = None,
    until_day_before: bool = False,
) -> tuple[pl.DataFrame, list[date]]:
    """The rows an audit of the last `days` days reads (those days and the day before), and the
    days it reports."""
    if days < 1:
        raise ValueError("an audit covers at least one day")
    last = now.date() - timedelta(days=1 if until_day_before else 0)
    chosen = day_range(last - timedelta(days=days - 1), last)
    return read_snapshots(lake, [chosen[0] - timedelta(days=1), *chosen], accounts), chosen


def stored_final_rows(
    lake: Lake,
    frame: pl.DataFrame,
    days: Sequence[date],
    now: datetime,
    after: timedelta = FINAL_ROW_AFTER,
) -> dict[str, set[str]]:
    """The stories each account has in the final-values table, of those (in the snapshot rows
    `frame`) that expired on `days` at least `after` before `now`: the partitions of their posted
    dates are read. A partition that cannot be read holds none (its stories are reported without
    a final row)."""
    due = final_rows_due(frame, days, now - after)
    parts = sorted(set(due.select("account", "posted_date").iter_rows()))
    found: dict[str, set[str]] = {}
    for (account, _), stored in zip(parts, read_partitions(lake, STORY_FINAL, parts), strict=True):
        if not isinstance(stored, Exception):
            found.setdefault(account, set()).update(stored.get_column("story_id").to_list())
    return found


def report_for(
    frame: pl.DataFrame,
    storage_url: str,
    *,
    now: datetime,
    days: Sequence[date],
    final_within: timedelta = FINAL_WITHIN,
    late_after: timedelta = LATE_AFTER,
    accounts: Sequence[str] = (),
    max_missed_finals: int = 0,
    max_missing_hours: int = 0,
    max_missing_final_rows: int = 0,
    final_rows: Mapping[str, Collection[str]] | None = None,
    final_row_after: timedelta = FINAL_ROW_AFTER,
) -> AuditReport:
    """The audit report of snapshot rows already read (`frame`); `final_rows`: the stories each
    account has in the final-values table (None: that table is not checked)."""
    chosen = sorted(days)
    coverage = day_coverage(
        frame,
        chosen,
        now,
        final_within=final_within,
        late_after=late_after,
        accounts=accounts,
        final_rows=final_rows,
        final_row_after=final_row_after,
    )
    return AuditReport(
        generated_at=now,
        days=chosen,
        storage_url=storage_url.rstrip("/"),
        final_minutes=final_within.total_seconds() / 60,
        late_minutes=late_after.total_seconds() / 60,
        max_missed_finals=max_missed_finals,
        max_missing_hours=max_missing_hours,
        max_missing_final_rows=max_missing_final_rows,
        final_row_minutes=None if final_rows is None else final_row_after.total_seconds() / 60,
        coverage=coverage,
    )


def daily_audit(lake: Lake, run: RunReport) -> AuditReport | None:
    """After the first hourly run of a UTC day (hour 0): audit the day before and log one `audit`
    entry. Any other run: nothing (None).

    It covers the run's accounts (another deployment's, or one taken out of the accounts file,
    may have files in the same lake). That run has just finalized the day's last stories (its
    hook covers the expiries since the run before it): so every story of theirs that expired the
    day before must have its final row now."""
    if run.capture != "hourly" or run.fetched_at.hour != 0:
        return None
    report = audit(
        lake,
        now=run.fetched_at,
        days=1,
        accounts=[a.account for a in run.accounts] or None,
        until_day_before=True,
        final_row_after=timedelta(0),
    )
    log_audit(report)
    return report
