"""`run(settings, accounts)`: one hourly snapshot of every requested account.

Accounts run concurrently (bounded); one account's failure is recorded in its report and never stops
the others. Per account: list the live stories, fetch their insights (oldest first, closest to
expiry), turn them into rows, add them to the day's file. A story always gets its row when it was
listed: metrics that could not be read are null, with the status saying why.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from ig_story_metrics import records
from ig_story_metrics.graph.client import CallResult, GraphClient
from ig_story_metrics.graph.errors import GraphError, NotEnoughViewers, StorySkipped
from ig_story_metrics.report import AccountReport, RunReport
from ig_story_metrics.settings import Account, Settings
from ig_story_metrics.storage import Storage, StorageError, open_storage


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_run_id(at: datetime) -> str:
    return f"{at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class RunContext:
    run_id: str
    fetched_at: datetime
    api_version: str


def story_outcome(
    results: Sequence[CallResult],
) -> tuple[dict[str, int | None], records.InsightsStatus, str | None]:
    """Merge one story's insights calls into (metric values, status, error message)."""
    metrics: dict[str, int | None] = {}
    errors: list[GraphError] = []
    for result in results:
        if result.error is None:
            metrics.update(records.parse_insights(result.payload))
        else:
            errors.append(result.error)
    skipped = next((e for e in errors if isinstance(e, StorySkipped)), None)
    if skipped is not None:
        if isinstance(skipped, NotEnoughViewers):
            return {}, "not_enough_viewers", skipped.message
        return {}, "expired", skipped.message
    if errors:
        message = "; ".join(dict.fromkeys(e.describe() for e in errors))
        has_values = any(v is not None for v in metrics.values())
        return metrics, "partial" if has_values else "error", message
    if not any(v is not None for v in metrics.values()):
        return metrics, "unavailable", "the Graph API returned no insights data"
    return metrics, "ok", None


async def capture_account(
    client: GraphClient,
    storage: Storage,
    account: Account,
    token: SecretStr,
    ctx: RunContext,
) -> AccountReport:
    """List, fetch, store one account; every failure ends up in the report, never raised."""
    started = time.monotonic()
    report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
    rows: list[dict[str, object]] = []
    try:
        listing = await client.list_stories(account.ig_user_id, token)
        report.listed = len(listing.stories)
        report.warnings.extend(listing.skipped)
        stories = sorted(listing.stories, key=lambda s: s.posted_at)  # closest to expiry first
        insights = await client.fetch_insights([s.id for s in stories], token) if stories else {}
        statuses: Counter[str] = Counter()
        for story in stories:
            metrics, status, error = story_outcome(insights.get(story.id, []))
            statuses[status] += 1
            rows.append(
                records.snapshot_row(
                    account=account.name,
                    ig_user_id=account.ig_user_id,
                    story=story,
                    fetched_at=ctx.fetched_at,
                    run_id=ctx.run_id,
                    api_version=ctx.api_version,
                    metrics=metrics,
                    status=status,
                    error=error,
                )
            )
        report.count(statuses)
    except GraphError as exc:
        report.ok = False
        report.error = f"Graph API: {exc.describe()}"
    if rows:
        try:
            written = await asyncio.to_thread(
                storage.append, account.name, ctx.fetched_at.date(), records.to_frame(rows)
            )
        except StorageError as exc:
            report.ok = False
            report.error = f"storage: {exc} ({len(rows)} rows not stored)"
        else:
            report.stored_rows = written.rows_added
            report.files = [written.parquet, written.schema]
    report.duration_seconds = round(time.monotonic() - started, 3)
    return report


async def run_async(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    *,
    storage: Storage | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = utc_now,
    run_id: str | None = None,
) -> RunReport:
    """One run over `accounts`; the report says what each got. Raises nothing for Graph or storage
    failures (they are in the report); raises `StorageError` only for an unusable STORAGE_URL."""
    started = time.monotonic()
    fetched_at = clock().astimezone(UTC)
    ctx = RunContext(run_id or new_run_id(fetched_at), fetched_at, settings.graph_api_version)
    lake = storage or open_storage(settings.storage_url)
    gate = asyncio.Semaphore(settings.max_concurrent_accounts)

    async def one(account: Account) -> AccountReport:
        async with gate:
            return await capture_account(client, lake, account, tokens[account.name], ctx)

    async with GraphClient(
        settings.graph_api_url,
        settings.graph_api_version,
        transport=transport,
        timeout=settings.request_timeout_seconds,
    ) as client:
        reports = await asyncio.gather(*(one(a) for a in accounts))
    return RunReport(
        run_id=ctx.run_id,
        fetched_at=fetched_at,
        api_version=ctx.api_version,
        storage_url=settings.storage_url,
        accounts=list(reports),
        duration_seconds=round(time.monotonic() - started, 3),
    )


def run(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    *,
    storage: Storage | None = None,
    clock: Callable[[], datetime] = utc_now,
    run_id: str | None = None,
) -> RunReport:
    """The synchronous entry point used by the CLI and the Cloud Function."""
    return asyncio.run(
        run_async(settings, accounts, tokens, storage=storage, clock=clock, run_id=run_id)
    )
