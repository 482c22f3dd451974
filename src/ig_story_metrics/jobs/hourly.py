"""The hourly run: one snapshot of every live story of every requested account.

Accounts run concurrently (bounded); one account's failure of any kind, a missing token included,
is recorded in its report and never stops the others (see `jobs/capture.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, Deadline, utc_now
from ig_story_metrics.graph.client import GraphClient, Transport
from ig_story_metrics.graph.media import MB, MediaFetcher
from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.jobs import finalize
from ig_story_metrics.jobs.archive import Archive
from ig_story_metrics.jobs.capture import (
    RunContext,
    StoryFilter,
    StorySource,
    Writes,
    capture_account,
    crash,
    fail,
    new_run_id,
)
from ig_story_metrics.jobs.hosts import clients_for
from ig_story_metrics.model import lazy
from ig_story_metrics.model.accounts import Account, missing_token
from ig_story_metrics.model.snapshot import Capture
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.report.models import AccountReport, RunReport
from ig_story_metrics.settings import Settings
from ig_story_metrics.storage import Lake, open_lake

# The Graph calls get 90 % of the budget: the rest is kept for writing what was captured.
GRAPH_SHARE = 0.9
# The media archive (beside the Graph calls) gets at most half: a slow CDN or bucket must leave the
# rows, which wait for it, their time to be stored.
ARCHIVE_SHARE = 0.5


def lake_for(settings: Settings) -> Lake:
    return open_lake(
        settings.storage_url,
        emulator_host=settings.storage_emulator_host,
        project=settings.google_cloud_project,
    )


async def capture_async(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    *,
    lake: Lake | None = None,
    transport: Transport | None = None,
    clock: Clock = utc_now,
    run_id: str | None = None,
    policy: RetryPolicy | None = None,
    select: StoryFilter | None = None,
    capture: Capture = "hourly",
    sources: Mapping[str, StorySource] | None = None,
    finals: bool | finalize.Finals = False,
) -> RunReport:
    """One run over `accounts`; every failure is in the report (`StorageError` only for a bad
    STORAGE_URL; no token: the account fails without a call to Meta). The sweep passes `select`,
    `capture="sweep"`, `sources` (its plan), its `finalize.Finals` (True: the run's own)."""
    started, fetched_at = time.monotonic(), clock().astimezone(UTC)
    budget = Deadline(settings.run_budget_seconds)
    ctx = _context(settings, run_id or new_run_id(fetched_at), fetched_at, budget, capture)
    planned = sources or {}
    opened = lake or lake_for(settings)
    gate = asyncio.Semaphore(settings.max_concurrent_accounts)

    async def one(account: Account) -> AccountReport:
        token = tokens.get(account.name)
        if token is None:  # nothing to call Meta with: this account fails, the others run
            return _without_token(account, ctx)
        async with gate:
            client = clients[account.login]  # its login's host
            job = capture_account(
                client, opened, account, token, ctx, clock, select, planned.get(account.name)
            )
            return await _contained(account, job)

    register_secrets(t.get_secret_value() for t in tokens.values())  # no output can carry one

    try:
        async with (
            clients_for(
                settings,
                (a.login for a in accounts),
                transport=transport,
                policy=policy,
                deadline=budget.share(GRAPH_SHARE),
            ) as clients,
            _loading_polars(clients.values()),
            _writing(opened, ctx) as ctx,
            _archiving(settings, ctx, opened, transport) as ctx,
            _finalizing(finals, opened, ctx, clock) as ctx,
        ):
            reports = await asyncio.gather(*(one(a) for a in accounts))
    finally:
        if lake is None:  # opened here, so closed here (the GCS client holds connections)
            opened.close()
    return RunReport(
        run_id=ctx.run_id,
        capture=capture,
        fetched_at=fetched_at,
        api_version=ctx.api_version,
        storage_url=settings.storage_url,
        accounts=list(reports),
        duration_seconds=round(time.monotonic() - started, 3),
    )


def _context(
    settings: Settings, run_id: str, at: datetime, budget: Deadline, capture: Capture
) -> RunContext:
    return RunContext(run_id, at, settings.graph_api_version, budget, capture)


@contextlib.asynccontextmanager
async def _loading_polars(clients: Collection[GraphClient]) -> AsyncIterator[None]:
    """Polars loads in a worker thread once the first request is sent, while the run waits on the
    network (model/lazy.py), rather than on the event loop's thread when the first rows are to be
    stored. Not before: the import would share the interpreter with building that request. A run
    that sends nothing (no token) never loads it here."""
    loading = asyncio.ensure_future(_load_once_sent(clients))
    try:
        yield
    finally:
        if not loading.done() and not any(c.sending.is_set() for c in clients):
            loading.cancel()
        await asyncio.wait([loading])
        if not loading.cancelled():
            loading.result()  # a failed import is the run's failure, as it would be later


async def _load_once_sent(clients: Collection[GraphClient]) -> None:
    sent = [asyncio.ensure_future(c.sending.wait()) for c in clients]
    if not sent:
        return
    try:
        await asyncio.wait(sent, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in sent:
            waiting.cancel()
    await asyncio.to_thread(lazy.load)


@contextlib.asynccontextmanager
async def _writing(lake: Lake, ctx: RunContext) -> AsyncIterator[RunContext]:
    """The run's context with its own threads to store rows, as many as the lake writes at once
    (`Backend.writers`), not asyncio's default of the CPUs + 4 for every backend, or its own
    thread where the backend allows (`jobs/capture.Writes`)."""
    with ThreadPoolExecutor(lake.backend.writers, thread_name_prefix="lake-write") as pool:
        yield replace(ctx, writes=Writes(pool, inline=lake.backend.inline))


@contextlib.asynccontextmanager
async def _archiving(
    settings: Settings, ctx: RunContext, lake: Lake, transport: Transport | None
) -> AsyncIterator[RunContext]:
    """The run's context with its media archive (jobs/archive.py): hourly runs only (they see
    every story first), when IG_ARCHIVE_MEDIA is on. `transport` (tests) serves the CDN too."""
    if not settings.archive_media or ctx.capture != "hourly":
        yield ctx
        return
    async with MediaFetcher(
        max_bytes=int(settings.media_max_mb * MB),
        concurrency=settings.media_concurrency,
        timeout_seconds=settings.request_timeout_seconds,
        transport=transport,
    ) as fetcher:
        # half the budget at most: the rows wait for the archive, and they matter more
        budget = ctx.write_deadline.share(ARCHIVE_SHARE) if ctx.write_deadline else None
        yield replace(ctx, archive=Archive(lake, fetcher, ctx.fetched_at, budget))


@contextlib.asynccontextmanager
async def _finalizing(
    on: bool | finalize.Finals, lake: Lake, ctx: RunContext, clock: Clock
) -> AsyncIterator[RunContext]:
    """The run's context with its final-values hook (jobs/finalize.Finals, or the one given) when
    `on`; at the end, waits for the accounts' final values (before the lake is closed)."""
    if not on:
        yield ctx
        return
    hook = on if isinstance(on, finalize.Finals) else finalize.Finals(lake, clock)
    try:
        yield replace(ctx, finals=hook.after_store)
    finally:
        await hook.finish()


async def _contained(account: Account, job: Awaitable[AccountReport]) -> AccountReport:
    """The account's report; `capture_account` contains its failures, this is the backstop."""
    try:
        return await job
    except Exception as exc:
        report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
        crash(report, exc, "the capture")
        return report


def _without_token(account: Account, ctx: RunContext) -> AccountReport:
    if ctx.finals is not None:  # its snapshots of earlier runs still have final values
        ctx.finals(account, ctx.fetched_at.date(), None)
    report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
    fail(report, missing_token(account))
    return report


def run(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    *,
    lake: Lake | None = None,
    transport: Transport | None = None,
    clock: Clock = utc_now,
    run_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> RunReport:
    """The synchronous entry point of the hourly run, used by the CLI and the Cloud Function,
    with the final values of the stories expired since (which never fail the run)."""
    return asyncio.run(
        capture_async(
            settings,
            accounts,
            tokens,
            lake=lake,
            transport=transport,
            clock=clock,
            run_id=run_id,
            policy=policy,
            finals=True,
        )
    )
