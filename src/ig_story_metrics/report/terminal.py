"""Reports on a terminal: a run (a table per account, the files written, the warnings, scrubbed),
the audit (a row per account and day, then every miss by name), a simulated day's figures, and the
token table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ig_story_metrics.redact import scrub
from ig_story_metrics.report.models import AccountReport, RunReport

if TYPE_CHECKING:  # what only the audit, the replay and the token table render (not the run)
    from ig_story_metrics.model.coverage import DayCoverage
    from ig_story_metrics.report.audit import AuditReport, DayRun
    from ig_story_metrics.report.tokens import TokensReport

# A fleet's run shows this many accounts by name (the failed first, then those with warnings) and
# sums up the rest; the files and warnings likewise. `run --json` and the log have every one.
FLEET_ROWS = 20


def render_run(report: RunReport, console: Console) -> None:
    """The short human summary: a table per account, then where the files are. A fleet (more
    than FLEET_ROWS accounts) shows its failed and warned accounts and one row for the rest."""
    sweep = report.capture == "sweep"
    kind = "sweep" if sweep else "run"
    table = Table(title=f"{kind} {report.run_id} at {report.fetched_at:%Y-%m-%d %H:%M:%S} UTC")
    first = "due / known (from)" if sweep else "stories listed"
    for name in ("account", first, "captured", "below threshold", "failed"):
        table.add_column(name, justify="left" if name == "account" else "right")
    table.add_column("status")
    shown = report.accounts  # in the order asked
    if len(shown) > FLEET_ROWS:  # a fleet: the failed first, then those with warnings
        shown = sorted(shown, key=lambda a: (a.ok, not a.warnings))[:FLEET_ROWS]
    for a in shown:
        why = escape(scrub(a.error or ""))
        status = "[green]ok[/green]" if a.ok else f"[red]FAILED[/red] {why}"
        table.add_row(
            a.account,
            f"{a.listed - a.not_due} / {a.listed} ({a.planned_from})" if sweep else str(a.listed),
            str(a.captured),
            str(a.below_threshold),
            str(a.failed),
            status,
            style=None if a.ok else "red",
        )
    _fleet_rows(report, shown, table)
    console.print(table)
    _files(
        report,
        console,
        "wrote no files (nothing due)" if sweep else "wrote no files (no live stories)",
    )
    warnings = [(a.account, w) for a in report.accounts for w in a.warnings]
    for account, warning in warnings[:FLEET_ROWS]:
        console.print(
            f"[yellow]warning[/yellow] {account}: {escape(scrub(warning))}", highlight=False
        )
    if len(warnings) > FLEET_ROWS:
        console.print(
            f"[yellow]warning[/yellow] and {len(warnings) - FLEET_ROWS} more warnings "
            "(`run --json` or the log has every one)",
            highlight=False,
        )


def _fleet_rows(report: RunReport, shown: list[AccountReport], table: Table) -> None:
    """A fleet's table ends with the accounts not shown, summed up, and the run's totals."""
    if len(shown) == len(report.accounts):
        return
    names = {a.account for a in shown}
    rest = [a for a in report.accounts if a.account not in names]
    table.add_section()
    for label, accounts in (
        (f"{len(rest)} more accounts", rest),
        (f"all {len(report.accounts)} accounts", report.accounts),
    ):
        failed = sum(not a.ok for a in accounts)
        status = f"[red]{failed} FAILED[/red]" if failed else "[green]ok[/green]"
        table.add_row(
            label,
            str(sum(a.listed - a.not_due for a in accounts)),
            str(sum(a.captured for a in accounts)),
            str(sum(a.below_threshold for a in accounts)),
            str(sum(a.failed for a in accounts)),
            status,
        )


def _files(report: RunReport, console: Console, none: str) -> None:
    files = [f for a in report.accounts for f in a.files]
    if not files:
        console.print(none)
    elif len(files) > 2 * FLEET_ROWS:
        console.print(
            f"wrote {len(files)} files under {report.storage_url} (`run --json` lists them)",
            soft_wrap=True,
            highlight=False,
        )
    else:
        console.print("wrote:")
        for path in files:
            console.print(f"  {path}", soft_wrap=True, highlight=False)


def render_audit(report: AuditReport, console: Console) -> None:
    """The audit: one table row per account and day, then every miss by name."""
    checked = report.final_row_minutes is not None  # the final-values table
    console.print(_audit_table(report, checked))
    share = report.final_share
    console.print(
        f"{report.finals_caught} of {report.expired} expired stories had a snapshot in their last "
        f"{report.final_minutes:g} minutes ({'-' if share is None else f'{share:.1%}'}); "
        f"{report.missed_finals} missed, {report.missing_hours} hourly runs missing, "
        f"{report.late_first_seen} stories first seen late"
        + (
            f", {report.missing_final_rows} without their row in the final table" if checked else ""
        ),
        highlight=False,
    )
    for c in report.coverage:
        for line in _misses(c, report.late_minutes):
            console.print(f"[yellow]{c.account} {c.day}[/yellow] {escape(line)}", highlight=False)
    if hint := report.finalize_hint():
        console.print(hint, highlight=False)
    for moved in report.quarantined:
        console.print(
            f"[yellow]quarantined[/yellow] {escape(moved)}: unreadable, moved aside (its rows are "
            "not counted until it is repaired or removed)",
            highlight=False,
            soft_wrap=True,
        )
    verdict = "[green]ok[/green]" if report.ok else "[red]FAILED[/red]"
    console.print(
        f"audit {verdict}: thresholds {report.max_missed_finals} missed finals, "
        f"{report.max_missing_hours} missing hourly runs"
        + (f", {report.max_missing_final_rows} missing final rows" if checked else ""),
        highlight=False,
    )


def _audit_table(report: AuditReport, checked: bool) -> Table:
    """One row per account and day; the column of missing final rows when they were checked."""
    table = Table(
        title=f"coverage {report.days[0]} .. {report.days[-1]} (UTC) in {report.storage_url}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    names = ["account", "day", "stories", "snapshots\nper story", "max\ngap"]
    names += [f"final\n<={report.final_minutes:g}m", "missed", "no\nrun", "late"]
    for name in [*names, "no\nfinal\nrow"] if checked else names:
        left = name in ("account", "day")
        table.add_column(name, justify="left" if left else "right", no_wrap=left)
    for c in report.coverage:
        cells = _coverage_cells(c)
        table.add_row(
            *[*cells, str(len(c.missing_final_rows))] if checked else cells,
            style="red" if c.missed_finals or c.missing_hours or c.missing_final_rows else None,
        )
    return table


def _coverage_cells(c: DayCoverage) -> list[str]:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    oldest = max((m.minutes_before_expiry or 0 for m in c.missed_finals), default=None)
    missed = f"{len(c.missed_finals)}" + ("" if oldest is None else f" ({oldest:g}m)")
    return [
        c.account,
        c.day.isoformat(),
        str(c.stories_seen),
        "/".join(number(v) for v in (c.snapshots_min, c.snapshots_median, c.snapshots_max)),
        "-" if c.largest_gap_minutes is None else f"{c.largest_gap_minutes:g}m",
        f"{c.finals_caught}/{c.expired}",
        missed,
        str(len(c.missing_hours)),
        str(len(c.late_first_seen)),
    ]


def _misses(c: DayCoverage, late_minutes: float) -> list[str]:
    lines = []
    for m in c.missed_finals:
        last = (
            "never a snapshot"
            if m.last_snapshot_at is None
            else (
                f"last snapshot {m.last_snapshot_at:%H:%M} ({m.minutes_before_expiry:g} min before)"
            )
        )
        lines.append(f"story {m.story_id} expired {m.expires_at:%H:%M}: {last}")
    if c.missing_hours:
        hours = ", ".join(f"{h:%H}:00" for h in c.missing_hours)
        lines.append(f"no hourly run in the hour(s) starting {hours}")
    for story in c.missing_final_rows:
        lines.append(f"story {story}: no row in the final-values table")
    for s in c.late_first_seen:
        lines.append(
            f"story {s.story_id} posted {s.posted_at:%H:%M} first seen {s.first_seen_at:%H:%M} "
            f"({s.minutes_after_posting:g} min > {late_minutes:g})"
        )
    return lines


def render_day(day: DayRun, console: Console) -> None:
    """The simulated day's figures: coverage with and without sweeps, and what each costs."""

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    extra = day.extra_operations
    console.print(
        f"simulated {day.start:%Y-%m-%d %H:%M} .. {day.end:%Y-%m-%d %H:%M} UTC in "
        f"{day.duration_seconds:.1f} s: {day.hourly.runs} hourly runs, {day.sweep.runs} sweeps",
        highlight=False,
    )
    table = Table(title="last snapshot within 10 minutes of expiry, and what it costs")
    for name in ("schedule", "expired stories caught", "API operations", "HTTP requests"):
        table.add_column(name, justify="left" if name == "schedule" else "right")
    table.add_row(
        "hourly only",
        share(day.share_hourly_only),
        str(day.hourly.operations),
        str(day.hourly.http_requests),
    )
    table.add_row(
        "hourly + sweeps",
        share(day.share_with_sweeps),
        f"{day.hourly.operations + day.sweep.operations}"
        + ("" if extra is None else f" (+{extra:.1%})"),
        str(day.hourly.http_requests + day.sweep.http_requests),
    )
    console.print(table)
    if day.final_stories is not None:
        sources = ", ".join(f"{k} {v}" for k, v in day.final_sources.items()) or "-"
        console.print(
            f"final values: {day.final_stories} expired stories, complete "
            f"{share(day.final_complete_share)} (final_source: {sources})",
            highlight=False,
        )


def render_tokens(report: TokensReport, console: Console) -> None:
    """One row per distinct token (named by its variable, never shown), then the notes."""
    table = Table(title=f"tokens at {report.checked_at:%Y-%m-%d %H:%M} UTC")
    for name in ("variable", "accounts", "login", "kind", "expires", "data access", "status"):
        table.add_column(name)
    for t in report.tokens:
        if t.ok:
            status = "[green]ok[/green]"
        else:
            status = "[red]FAILED[/red] " + escape("; ".join(t.problems))
        if t.valid and not t.permissions_checked:
            status += " (permissions not readable)"
        table.add_row(
            escape(t.label),
            escape(", ".join(t.accounts)),
            t.login,
            escape(t.kind or "-"),
            escape(t.expires_at),
            escape(t.data_access_expires_at or "-"),
            status,
            style=None if t.ok else "red",
        )
    console.print(table)
    for t in report.tokens:
        for version in t.renewed:
            console.print(
                f"{escape(t.label)}: renewed, stored as {escape(version)}", highlight=False
            )
        for note in t.notes:
            console.print(
                f"[yellow]note[/yellow] {escape(t.label)}: {escape(note)}", highlight=False
            )
