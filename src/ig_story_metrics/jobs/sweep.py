"""The sweep: snapshot only the stories about to expire, so each one's last snapshot lands minutes
(not up to an hour) before it vanishes. Scheduled every 10 minutes beside the hourly run.

Per account: know the live stories, keep those expiring within `IG_SWEEP_WINDOW_MINUTES`
(`model.expiry.due`), fetch their insights oldest first, add their rows (`capture = "sweep"`) to
the day's file. The stories come from the account's last hourly listing in the lake when it is
fresh (`model.expiry.lake_plan`: no listing call at all), else from the listing. A sweep
with nothing due writes nothing (and makes no call, or only the listing calls). Containment,
retries and the report are the hourly run's (`jobs/capture.py`); a plan that cannot be read is a
warning and the account lists instead. Its budget fits a 10-minute schedule.

The final values (`jobs/finalize.Finals`) of an account with nothing due and no story expired
since its latest hourly listing cannot have changed since that run built them, save for a webhook
delivered since for a story expired before (the next hourly run takes it): the sweep leaves them
alone (no read of yesterday's file, no listing of its webhook deliveries). Most accounts are such
in most sweeps: their day's file is their only read. The others' are built as in the hourly run,
beside the captures of the stories due, which nothing delays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

import polars as pl
from pydantic import SecretStr

from ig_story_metrics.clock import Clock, utc_now
from ig_story_metrics.graph.client import GraphClient, Session, Transport
from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.graph.stories import Listing
from ig_story_metrics.jobs import finalize
from ig_story_metrics.jobs.capture import StorySource
from ig_story_metrics.jobs.hourly import capture_async, lake_for
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.expiry import PLAN_COLUMNS, PLAN_FRESH, LakePlan, due, lake_plan
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.model.story import Story
from ig_story_metrics.redact import scrub
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import Settings
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.scan import read_partitions

# A sweep starts every 10 minutes: it must be over well before the next one.
SWEEP_BUDGET_SECONDS = 240.0
PLAN_CHUNK = 100  # accounts planned together: their files read at once, dropped once planned
Plan = Literal["lake", "list"]


async def sweep_async(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    *,
    lake: Lake | None = None,
    transport: Transport | None = None,
    clock: Clock = utc_now,
    run_id: str | None = None,
    policy: RetryPolicy | None = None,
    plan: Plan = "lake",
    finals: bool = False,
) -> RunReport:
    """One sweep over `accounts`. `plan="list"` always lists instead of planning from the lake;
    `finals` as for `capture_async`."""
    now = clock()
    window = timedelta(minutes=settings.sweep_window_minutes)
    opened = lake or lake_for(settings)
    try:
        hook = finalize.Finals(opened, clock) if finals else None
        plans: dict[str, list[Story] | str | None] = {}
        if plan == "lake":
            plans = await _plans(opened, accounts, now, window, hook)
        sources = {name: _source(p) for name, p in plans.items() if isinstance(p, list)}
        report = await capture_async(
            sweep_settings(settings),
            accounts,
            tokens,
            lake=opened,
            transport=transport,
            clock=clock,
            run_id=run_id,
            policy=policy,
            select=lambda stories: due(stories, now, window),
            capture="sweep",
            sources=sources,
            finals=hook if hook is not None else False,
        )
    finally:
        if lake is None:
            opened.close()
    for account in report.accounts:
        planned = plans.get(account.account)
        if isinstance(planned, list):
            account.planned_from = "lake"
        elif isinstance(planned, str):
            account.warnings.append(planned)
    return report


def sweep_settings(settings: Settings) -> Settings:
    """The settings of a sweep: the run's budget, capped to fit a 10-minute schedule."""
    budget = min(settings.run_budget_seconds, SWEEP_BUDGET_SECONDS)
    return settings.model_copy(update={"run_budget_seconds": budget})


async def _plans(
    lake: Lake,
    accounts: Sequence[Account],
    now: datetime,
    window: timedelta,
    hook: finalize.Finals | None,
) -> dict[str, list[Story] | str | None]:
    """Per account: the due stories planned from the lake, None (not fresh: list), or why the
    lake could not be read (a warning: list). `hook` leaves alone the accounts with nothing due
    and no story expired since their latest hourly listing."""
    names = [account.name for account in accounts]
    try:
        found = await asyncio.to_thread(plan_accounts, lake, names, now, window)
    except Exception as exc:  # a bug of ours: every account lists, and says why
        found = [exc] * len(names)
    plans: dict[str, list[Story] | str | None] = {}
    quiet: list[str] = []
    for account, result in zip(accounts, found, strict=True):
        if isinstance(result, Exception):
            reason = scrub(str(result)) or type(result).__name__
            plans[account.name] = (
                f"could not plan the sweep from the lake ({reason}): listed instead"
            )
        elif result is None:
            plans[account.name] = None
        else:
            plans[account.name] = result.due
            if not result.due and not result.expired:
                quiet.append(account.name)
    if hook is not None:
        hook.leave_alone(quiet)
    return plans


def plan_accounts(
    lake: Lake, accounts: Sequence[str], now: datetime, window: timedelta
) -> list[LakePlan | Exception | None]:
    """The plan of each account from its latest hourly listing in the lake (`lake_plan`; None:
    list), or the error that stopped it (that account's alone). PLAN_CHUNK accounts' files are
    read together (`storage.scan.read_partitions`: one Polars query decodes them), and dropped
    once planned."""
    days = sorted({(now - PLAN_FRESH).date(), now.date()})  # before 01:15 UTC: yesterday's too
    plans: list[LakePlan | Exception | None] = []
    for start in range(0, len(accounts), PLAN_CHUNK):
        chunk = accounts[start : start + PLAN_CHUNK]
        found = iter(read_partitions(lake, SNAPSHOTS, [(a, day) for a in chunk for day in days]))
        for _ in chunk:
            plans.append(_plan([next(found) for _ in days], now, window))
    return plans


def _plan(
    frames: list[pl.DataFrame | Exception], now: datetime, window: timedelta
) -> LakePlan | Exception | None:
    try:
        read = [frame for frame in frames if isinstance(frame, pl.DataFrame)]
        if len(read) < len(frames):
            return next(frame for frame in frames if isinstance(frame, Exception))
        if len(read) > 1:
            read = [pl.concat([frame.select(PLAN_COLUMNS) for frame in read])]
        return lake_plan(read[0], now, window)
    except Exception as exc:  # an odd file is its account's warning, never the sweep's end
        return exc


def _source(stories: list[Story]) -> StorySource:
    async def planned(client: GraphClient, session: Session) -> Listing:
        return Listing(stories=list(stories))

    return planned


def run(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    *,
    lake: Lake | None = None,
    transport: Transport | None = None,
    clock: Clock = utc_now,
    plan: Plan = "lake",
) -> RunReport:
    """The synchronous entry point of the sweep, used by the CLI and the Cloud Function, with the
    final values of the stories expired since (which never fail the sweep)."""
    return asyncio.run(
        sweep_async(
            settings,
            accounts,
            tokens,
            lake=lake,
            transport=transport,
            clock=clock,
            plan=plan,
            finals=True,
        )
    )
