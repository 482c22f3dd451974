"""`ig-story-metrics finalize`: the final-values table (one row per expired story)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ig_story_metrics.cli.common import app, console, fail
from ig_story_metrics.clock import utc_now
from ig_story_metrics.errors import ConfigError, StorageError
from ig_story_metrics.jobs import hourly
from ig_story_metrics.jobs.finalize import DEFAULT_DAYS, FinalizeResult, finalize, partition_url
from ig_story_metrics.settings import load_accounts, load_settings

if TYPE_CHECKING:
    from rich.console import Console


@app.command("finalize")
def finalize_command(
    days: Annotated[
        int,
        typer.Option(min=1, max=92, help="Stories that expired on these UTC days, today included."),
    ] = DEFAULT_DAYS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Build the final values of every story that expired in the last N days (STORAGE_URL):
    tables/story_final/account=NAME/posted_date=DATE/story_final.parquet, partitions replaced whole.

    Example: ig-story-metrics finalize --days 7
    """
    try:
        settings = load_settings()
        accounts = load_accounts(settings.accounts_file)
        with hourly.lake_for(settings) as lake:
            result = finalize(
                lake, {a.name: a.ig_user_id for a in accounts.values()}, utc_now(), days
            )
            urls = [partition_url(lake, p) for p in result.written]
    except (ConfigError, StorageError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        _render(result, urls, console())


def _render(result: FinalizeResult, urls: list[str], shown: Console) -> None:
    share = result.complete_share
    shown.print(
        f"final values of stories expired {result.first_day} .. {result.last_day}: "
        f"{result.stories} stories in {len(result.partitions)} partitions, "
        f"{len(result.written)} written; complete: "
        + ("-" if share is None else f"{result.complete}/{result.stories} ({share:.0%})"),
        highlight=False,
    )
    for url in urls:
        shown.print(f"  {url}", highlight=False)
