"""The `report` command: an HTML page with the stories' charts, from the lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ig_story_metrics.cli.common import AccountOption, app, console, fail, lake_accounts
from ig_story_metrics.clock import utc_now
from ig_story_metrics.errors import ConfigError, StorageError
from ig_story_metrics.jobs import hourly
from ig_story_metrics.settings import load_settings


@app.command()
def report(
    days: Annotated[int, typer.Option(min=1, max=92, help="UTC days, today included.")] = 7,
    account: AccountOption = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the page.")] = Path(
        "report.html"
    ),
    publish: Annotated[
        bool,
        typer.Option(
            "--publish", help="Also write it to {STORAGE_URL}/reports/{date}/report.html."
        ),
    ] = False,
) -> None:
    """A self-contained HTML report with charts (opens offline), read from the lake.

    Per account: summary, completion and exit rate per frame, every story's curve by age, stories
    per day, best and worst stories, and the audit's coverage.
    Example: ig-story-metrics report --days 2 --account NPI --out npi.html
    """
    from ig_story_metrics.jobs import report as report_job  # the report's own imports: when it runs
    from ig_story_metrics.report.html import render

    accounts = lake_accounts(account)
    now = utc_now()
    try:
        with hourly.lake_for(load_settings()) as lake:
            page = render(report_job.build(lake, now=now, days=days, accounts=accounts))
            published = report_job.publish(lake, page, now.date()) if publish else None
    except (ConfigError, StorageError) as exc:
        raise fail(str(exc)) from None
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    shown = console()
    shown.print(f"report written to {out}", highlight=False)
    if published:
        shown.print(f"published to {published}", highlight=False)
