"""The hourly run: one snapshot of every live story of every requested account.

Accounts run concurrently (bounded); one account's failure is recorded in its report and never stops
the others (see `jobs/capture.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, Deadline, utc_now
from ig_story_metrics.graph.client import Transport
from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.jobs.capture import RunContext, StoryFilter, capture_account, new_run_id
from ig_story_metrics.jobs.hosts import clients_for, policy_for  # noqa: F401 - re-exported
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.report.models import AccountReport, RunReport
from ig_story_metrics.settings import Settings
from ig_story_metrics.storage import Lake, open_lake

# The Graph calls get 90 % of the budget: the rest is kept for writing what was captured.
GRAPH_SHARE = 0.9


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
) -> RunReport:
    """One run over `accounts`; the report says what each got. Raises nothing for Graph or storage
    failures (they are in the report); raises `StorageError` only for an unusable STORAGE_URL."""
    started = time.monotonic()
    fetched_at = clock().astimezone(UTC)
    budget = Deadline(settings.run_budget_seconds)
    ctx = RunContext(
        run_id or new_run_id(fetched_at), fetched_at, settings.graph_api_version, budget
    )
    opened = lake or lake_for(settings)
    gate = asyncio.Semaphore(settings.max_concurrent_accounts)

    async def one(account: Account) -> AccountReport:
        async with gate:
            token = tokens[account.name]
            client = clients[account.login]  # its login's host
            return await capture_account(client, opened, account, token, ctx, clock, select)

    try:
        async with clients_for(
            settings,
            (a.login for a in accounts),
            transport=transport,
            policy=policy,
            deadline=budget.share(GRAPH_SHARE),
        ) as clients:
            reports = await asyncio.gather(*(one(a) for a in accounts))
    finally:
        if lake is None:  # opened here, so closed here (the GCS client holds connections)
            opened.close()
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
    lake: Lake | None = None,
    transport: Transport | None = None,
    clock: Clock = utc_now,
    run_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> RunReport:
    """The synchronous entry point of the hourly run, used by the CLI and the Cloud Function."""
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
        )
    )
