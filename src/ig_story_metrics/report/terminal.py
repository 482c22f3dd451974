"""The run report on a terminal: a table per run, the files written, the warnings (scrubbed)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ig_story_metrics.redact import scrub
from ig_story_metrics.report.models import RunReport


def render_run(report: RunReport, console: Console) -> None:
    """The short human summary: a table per account, then where the files are."""
    table = Table(title=f"run {report.run_id} at {report.fetched_at:%Y-%m-%d %H:%M:%S} UTC")
    for name in ("account", "stories listed", "captured", "below threshold", "failed"):
        table.add_column(name, justify="left" if name == "account" else "right")
    table.add_column("status")
    for a in report.accounts:
        why = escape(scrub(a.error or ""))
        status = "[green]ok[/green]" if a.ok else f"[red]FAILED[/red] {why}"
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
                f"[yellow]warning[/yellow] {a.account}: {escape(scrub(warning))}", highlight=False
            )
