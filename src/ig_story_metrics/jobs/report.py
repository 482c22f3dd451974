"""The HTML report job: read the last days' snapshots back from the lake, build what each account's
section shows (`model.stories`, the audit's coverage), render it (`report.html`), and publish it.
A story's final values come from the final-values table when it has been finalized (its last
snapshot values filled with Meta's webhook values), from its snapshots otherwise.

    build(lake, now=..., days=7)            -> StoriesReport (the data of the page)
    publish(lake, html, day)                -> the URL of reports/{day}/report.html in the lake

A story belongs to the report when it has a snapshot fetched on one of the chosen days; its earlier
snapshots (the day before) are read too, so that its curve starts at its posting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

from ig_story_metrics.errors import StorageError
from ig_story_metrics.jobs.archive import THUMBNAIL
from ig_story_metrics.jobs.audit import read_days, report_for, stored_final_rows
from ig_story_metrics.model import stories
from ig_story_metrics.model.coverage import TAKEN
from ig_story_metrics.model.final import STORY_FINAL
from ig_story_metrics.report.html import AccountSection, StoriesReport, Thumbnail
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.blobs import put

THUMBNAIL_LIMIT = 2 * 1024 * 1024  # an archived image larger than this is linked, not inlined
IMAGE_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def report_key(day: date) -> str:
    """Where `--publish` writes the report of `day` in the lake."""
    return f"reports/{day.isoformat()}/report.html"


def build(
    lake: Lake, *, now: datetime, days: int = 7, accounts: Sequence[str] | None = None
) -> StoriesReport:
    """The report's data: every account (or `accounts`) over the last `days` UTC days."""
    frame, chosen = read_days(lake, now=now, days=days, accounts=accounts)
    finals = stored_final_rows(lake, frame, chosen, now)
    audit = report_for(
        frame, lake.url(""), now=now, days=chosen, accounts=accounts or (), final_rows=finals
    )
    in_window = frame.filter(pl.col("fetched_at").dt.date().is_in(chosen))
    wanted = in_window.select("account", "story_id").unique()
    rows = frame.join(wanted, on=["account", "story_id"], how="semi")
    names = sorted(set(accounts or ()) | set(rows["account"].unique().to_list()))
    sections = [_section(lake, name, rows.filter(pl.col("account") == name)) for name in names]
    return StoriesReport(
        generated_at=now,
        first_day=chosen[0],
        last_day=chosen[-1],
        storage_url=lake.url("").rstrip("/"),
        accounts=sections,
        coverage=audit.coverage,
        final_share=audit.final_share,
    )


def _section(lake: Lake, account: str, rows: pl.DataFrame) -> AccountSection:
    finals = stories.with_final_values(
        stories.story_finals(rows), _final_table(lake, account, rows)
    )
    best, worst = stories.best_and_worst(finals)
    snapshots = rows.filter(pl.col("insights_status").is_in(TAKEN)).height
    return AccountSection(
        summary=stories.summary(account, finals, snapshots),
        finals=finals,
        curves=stories.curves(rows),
        per_day=stories.per_day(finals),
        best=best,
        worst=worst,
        thumbnails=_thumbnails(lake, pl.concat([best, worst]).unique("story_id")),
    )


def _final_table(lake: Lake, account: str, rows: pl.DataFrame) -> pl.DataFrame:
    """The final-values table's rows of the account's stories (empty where not finalized yet)."""
    posted = rows["posted_at"].drop_nulls().dt.date().unique().sort().to_list()
    parts = [lake.read(STORY_FINAL, account, day) for day in posted]
    found = [part for part in parts if not part.is_empty()]
    return pl.concat(found, how="diagonal_relaxed") if found else pl.DataFrame()


def _thumbnails(lake: Lake, chosen: pl.DataFrame) -> dict[str, Thumbnail]:
    """The archived images of the chosen stories (a video's thumbnail), inlined in the page."""
    found: dict[str, Thumbnail] = {}
    for row in chosen.select("story_id", "media_path").drop_nulls().iter_rows(named=True):
        path: str = row["media_path"]
        stem = path.rsplit(".", 1)[0]
        for key in (path, *(f"{stem}{THUMBNAIL}{ext}" for ext in IMAGE_TYPES)):
            kind = IMAGE_TYPES.get(key.rsplit(".", 1)[-1].lower())
            if kind is None:
                continue
            try:
                data, _ = lake.backend.read(key)
            except StorageError:
                continue  # a picture that cannot be read leaves a story without it, nothing more
            if data is not None and len(data) <= THUMBNAIL_LIMIT:
                found[row["story_id"]] = Thumbnail(kind, data)
                break
    return found


def publish(lake: Lake, html: str, day: date) -> str:
    """Write the page to `reports/{day}/report.html` (replacing that day's earlier report)."""
    key = report_key(day)
    put(lake, key, html.encode(), "text/html; charset=utf-8")
    return lake.url(key)
