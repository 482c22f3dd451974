"""The per-account capture shared by the jobs: list, fetch, build rows, store; never raises.

Per account: list the live stories, fetch their insights (oldest first, closest to expiry), turn
them into rows, add them to the day's file. A story always gets its row when it was listed: metrics
that could not be read are null, with the status saying why. Every failure ends up in the account's
report, never raised, so one account never stops the others.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, Deadline, utc_now
from ig_story_metrics.errors import StorageError
from ig_story_metrics.graph.advice import account_advice
from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, GraphError
from ig_story_metrics.graph.outcome import read_outcomes
from ig_story_metrics.graph.stories import Listing, list_stories
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.snapshot import SNAPSHOTS, Capture, snapshot_row
from ig_story_metrics.model.story import Story, oldest_first
from ig_story_metrics.report.models import AccountReport, StoryProblem
from ig_story_metrics.storage import Lake

StoryFilter = Callable[[Sequence[Story]], Sequence[Story]]
# Where a job's stories come from: the listing (default), or a plan made beforehand (the sweep's
# stories from the lake's last hourly listing).
StorySource = Callable[[GraphClient, Session], Awaitable[Listing]]


def new_run_id(at: datetime) -> str:
    return f"{at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every account of one run shares: its id, its moment, the API version, the deadline
    of the write phase."""

    run_id: str
    fetched_at: datetime
    api_version: str
    write_deadline: Deadline | None = None
    capture: Capture = "hourly"


async def capture_account(
    client: GraphClient,
    lake: Lake,
    account: Account,
    token: SecretStr,
    ctx: RunContext,
    clock: Clock = utc_now,
    select: StoryFilter | None = None,
    source: StorySource | None = None,
) -> AccountReport:
    """List, fetch, store one account; every failure ends up in the report, never raised.

    `select` narrows the listed stories to those this job snapshots (the sweep's expiring ones);
    `source` replaces the listing call (a plan made beforehand).
    """
    started = time.monotonic()
    report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
    session = Session(account.name, account.ig_user_id, token)
    rows: list[dict[str, object]] = []
    try:
        listing = await (source or list_stories)(client, session)
        report.listed = len(listing.stories)
        report.warnings.extend(listing.skipped)
        chosen = listing.stories if select is None else select(listing.stories)
        report.not_due = report.listed - len(chosen)
        stories = oldest_first(chosen)
        read = await read_outcomes(client, session, stories, clock)
        report.warnings.extend(read.warnings)
        statuses: Counter[str] = Counter()
        for story in stories:
            metrics, status, error = read.outcomes[story.id]
            statuses[status] += 1
            if status != "ok":
                report.problems.append(StoryProblem(story_id=story.id, status=status, error=error))
            rows.append(
                snapshot_row(
                    account=account.name,
                    ig_user_id=account.ig_user_id,
                    story=story,
                    fetched_at=ctx.fetched_at,
                    run_id=ctx.run_id,
                    api_version=ctx.api_version,
                    metrics=metrics,
                    status=status,
                    error=error,
                    capture=ctx.capture,
                )
            )
        report.count(statuses)
        report.rejected_metrics = read.refused_metrics
        failure = read.error or listing.error
        if failure is not None:  # the account fails; the rows above are stored all the same
            raise failure
    except AccountFatal as exc:
        report.ok = False
        report.error = account_advice(account, exc)
    except GraphError as exc:
        report.ok = False
        report.error = f"Graph API: {exc.describe()}"
    report.take_counters(session.counters)
    if rows:
        await _store(lake, account, ctx, rows, report)
    report.duration_seconds = round(time.monotonic() - started, 3)
    return report


async def _store(
    lake: Lake,
    account: Account,
    ctx: RunContext,
    rows: list[dict[str, object]],
    report: AccountReport,
) -> None:
    try:
        written = await asyncio.to_thread(
            lake.append,
            SNAPSHOTS,
            account.name,
            ctx.fetched_at.date(),
            SNAPSHOTS.frame(rows),
            deadline=ctx.write_deadline,
        )
    except StorageError as exc:
        report.ok = False
        report.error = f"storage: {exc} ({len(rows)} rows not stored)"
    else:
        report.stored_rows = written.rows_added
        report.files = [written.parquet, written.schema]
