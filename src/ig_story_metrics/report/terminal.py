"""Reports on a terminal: a table per run (the files written, the warnings), the token table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ig_story_metrics.report.models import RunReport
from ig_story_metrics.report.tokens import TokensReport


def render_run(report: RunReport, console: Console) -> None:
    """The short human summary: a table per account, then where the files are."""
    table = Table(title=f"run {report.run_id} at {report.fetched_at:%Y-%m-%d %H:%M:%S} UTC")
    for name in ("account", "stories listed", "captured", "below threshold", "failed"):
        table.add_column(name, justify="left" if name == "account" else "right")
    table.add_column("status")
    for a in report.accounts:
        status = "[green]ok[/green]" if a.ok else f"[red]FAILED[/red] {escape(a.error or '')}"
        table.add_row(
            a.account,
            str(a.listed),
            str(a.captured),
            str(a.below_threshold),
            str(a.failed),
            status,
            style=None if a.ok else "red",
        )
    console.print(table)
    files = [f for a in report.accounts for f in a.files]
    if files:
        console.print("wrote:")
        for path in files:
            console.print(f"  {path}", soft_wrap=True, highlight=False)
    else:
        console.print("wrote no files (no live stories)")
    for a in report.accounts:
        for warning in a.warnings:
            console.print(
                f"[yellow]warning[/yellow] {a.account}: {escape(warning)}", highlight=False
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
