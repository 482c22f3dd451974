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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, Deadline, utc_now
from ig_story_metrics.errors import StorageError
from ig_story_metrics.graph.advice import account_advice
from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, GraphError
from ig_story_metrics.graph.insights import fetch_insights
from ig_story_metrics.graph.outcome import story_outcome
from ig_story_metrics.graph.stories import list_stories
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.snapshot import SNAPSHOTS, snapshot_row
from ig_story_metrics.model.story import Story
from ig_story_metrics.report.models import AccountReport, StoryProblem
from ig_story_metrics.storage import Lake

StoryFilter = Callable[[Sequence[Story]], Sequence[Story]]


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


async def capture_account(
    client: GraphClient,
    lake: Lake,
    account: Account,
    token: SecretStr,
    ctx: RunContext,
    clock: Clock = utc_now,
    select: StoryFilter | None = None,
) -> AccountReport:
    """List, fetch, store one account; every failure ends up in the report, never raised.

    `select` narrows the listed stories to those this job snapshots (the sweep's expiring ones).
    """
    started = time.monotonic()
    report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
    session = Session(account.name, account.ig_user_id, token)
    rows: list[dict[str, object]] = []
    try:
        listing = await list_stories(client, session)
        report.listed = len(listing.stories)
        report.warnings.extend(listing.skipped)
        chosen = listing.stories if select is None else select(listing.stories)
        stories = sorted(chosen, key=lambda s: s.posted_at)  # oldest first
        insights = await fetch_insights(client, session, [s.id for s in stories]) if stories else {}
        statuses: Counter[str] = Counter()
        now = clock()
        for story in stories:
            metrics, status, error = story_outcome(story, insights.get(story.id, []), now)
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
        report.not_stored = [str(row["story_id"]) for row in rows]
    else:
        report.stored_rows = written.rows_added
        report.files = [written.parquet]
        report.quarantined = list(written.quarantined)
        for moved in written.quarantined:
            report.warnings.append(
                f"storage: {written.parquet} was not readable Parquet; it was moved aside to "
                f"{moved} and the file started afresh"
            )
        if written.schema_error is None:
            report.files.append(written.schema)
        else:  # the rows are stored: the account did not fail
            report.warnings.append(
                f"storage: the rows are stored, but the schema file was not written: "
                f"{written.schema_error}"
            )
