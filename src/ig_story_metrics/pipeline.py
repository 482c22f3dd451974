"""`run(settings, accounts)`: one hourly snapshot of every requested account.

Accounts run concurrently (bounded); one account's failure is recorded in its report and never stops
the others. Per account: list the live stories, fetch their insights (oldest first, closest to
expiry), turn them into rows, add them to the day's file. A story always gets its row when it was
listed: metrics that could not be read are null, with the status saying why.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from ig_story_metrics import records
from ig_story_metrics.graph.client import CallResult, GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, GraphError, NotEnoughViewers, StoryExpired
from ig_story_metrics.graph.throttle import Deadline, RetryPolicy
from ig_story_metrics.report import AccountReport, RunReport, StoryProblem
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
    story: records.Story, results: Sequence[CallResult], now: datetime
) -> tuple[dict[str, int | None], records.InsightsStatus, str | None]:
    """Merge one story's insights calls into (metric values, status, error message).

    Null stays null: a metric that was refused, failed or came back empty is never a zero.
    """
    metrics: dict[str, int | None] = {}
    errors: list[GraphError] = []
    rejected: list[str] = []
    empty = 0
    for result in results:
        rejected.extend(result.rejected)
        if result.error is not None:
            errors.append(result.error)
        elif result.payload is not None:
            values = records.parse_insights(result.payload)
            empty += not values
            metrics.update(values)
    has_values = any(v is not None for v in metrics.values())
    if any(isinstance(e, NotEnoughViewers) for e in errors):
        return {}, "not_enough_viewers", _first(errors, NotEnoughViewers)
    gone = any(isinstance(e, StoryExpired) for e in errors)
    if gone or (now >= story.expires_at and (errors or not has_values)):
        why = _first(errors, StoryExpired) or "the story expired before its insights were read"
        return metrics, "expired", why
    notes = [e.describe() for e in errors]
    if rejected:
        notes.append("metrics rejected by the Graph API: " + ", ".join(dict.fromkeys(rejected)))
    if empty and has_values:
        notes.append(f"{empty} insights call(s) returned no data")
    message = "; ".join(dict.fromkeys(notes)) or None
    if not has_values:
        if errors or rejected:
            return metrics, "error", message
        return metrics, "unavailable", "the Graph API returned no insights data"
    return metrics, ("partial" if message else "ok"), message


def _first(errors: Sequence[GraphError], kind: type[GraphError]) -> str | None:
    return next((e.message for e in errors if isinstance(e, kind)), None)


_EXPIRED_ON = re.compile(r"expired on ([^.]+)", re.IGNORECASE)
PERMISSIONS = "instagram_basic, instagram_manage_insights, pages_read_engagement, pages_show_list"


def account_advice(account: Account, error: GraphError) -> str:
    """A one-line, actionable message for an account the API refuses to serve."""
    what = error.describe()
    if error.code in (190, 102):
        when = _EXPIRED_ON.search(error.message)
        if error.subcode == 463 or when:
            on = f" on {when.group(1).strip()}" if when else ""
            return (
                f"token for {account.name} expired{on}: create a new long-lived token and update "
                f"{account.token_env or 'IG_ACCESS_TOKEN'} ({what})"
            )
        return (
            f"token for {account.name} is invalid or revoked: log in again and create a new "
            f"long-lived token for {account.token_env or 'IG_ACCESS_TOKEN'} ({what})"
        )
    if error.code == 100:
        return (
            f"account {account.name}: ig_user_id {account.ig_user_id} does not exist or this "
            f"token cannot see it: check the accounts file ({what})"
        )
    return (
        f"token for {account.name} lacks a permission: grant {PERMISSIONS} to the app and "
        f"create a new token ({what})"
    )


async def capture_account(
    client: GraphClient,
    storage: Storage,
    account: Account,
    token: SecretStr,
    ctx: RunContext,
    clock: Callable[[], datetime] = utc_now,
) -> AccountReport:
    """List, fetch, store one account; every failure ends up in the report, never raised."""
    started = time.monotonic()
    report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
    session = Session(account.name, account.ig_user_id, token)
    rows: list[dict[str, object]] = []
    try:
        listing = await client.list_stories(session)
        report.listed = len(listing.stories)
        report.warnings.extend(listing.skipped)
        stories = sorted(listing.stories, key=lambda s: s.posted_at)  # closest to expiry first
        insights = await client.fetch_insights(session, [s.id for s in stories]) if stories else {}
        statuses: Counter[str] = Counter()
        now = clock()
        for story in stories:
            metrics, status, error = story_outcome(story, insights.get(story.id, []), now)
            statuses[status] += 1
            if status != "ok":
                report.problems.append(StoryProblem(story_id=story.id, status=status, error=error))
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
        report.rejected_metrics = sorted(
            {m for r in insights.values() for c in r for m in c.rejected}
        )
    except AccountFatal as exc:
        report.ok = False
        report.error = account_advice(account, exc)
    except GraphError as exc:
        report.ok = False
        report.error = f"Graph API: {exc.describe()}"
    report.http_requests = session.http_requests
    report.retries = session.retries
    report.waits = session.waits
    report.wait_seconds = round(session.wait_seconds, 3)
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
            return await capture_account(client, lake, account, tokens[account.name], ctx, clock)

    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.backoff_base_seconds,
        max_seconds=settings.backoff_max_seconds,
        pause_percent=settings.usage_pause_percent,
    )
    # The Graph calls get 90 % of the budget: the rest is kept for writing what was captured.
    deadline = Deadline(settings.run_budget_seconds * 0.9)
    try:
        async with GraphClient(
            settings.graph_api_url,
            settings.graph_api_version,
            transport=transport,
            timeout=settings.request_timeout_seconds,
            policy=policy,
            deadline=deadline,
        ) as client:
            reports = await asyncio.gather(*(one(a) for a in accounts))
    finally:
        if storage is None:  # opened here, so closed here (the GCS client holds connections)
            lake.close()
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
