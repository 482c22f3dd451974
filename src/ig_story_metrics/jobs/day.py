"""A simulated day: production's schedule replayed on a virtual clock, through the production jobs.

`schedule()` lists the runs the two Cloud Scheduler jobs make between two moments: the hourly run
at every full hour, the sweep every 10 minutes at minute 5, 15, ..., 55 (off the hour, so it never
races the hourly run for the same daily file, and a story's last sweep is still at most 10 minutes
before its expiry). `replay()` sets the shared `VirtualClock` to each moment in turn and runs the
job, exactly as production does: the real client over HTTP, the real lake. The Graph API at
`settings.graph_api_url` must read the same clock (the simulator's `World(clock=...)`).

Only the wall clock is virtual: retries, pacing and the run budget stay in real seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import SecretStr

from ig_story_metrics.clock import MAX_REPLAY_HOURS, VirtualClock
from ig_story_metrics.jobs import hourly, sweep
from ig_story_metrics.jobs.audit import read_days, report_for, stored_final_rows
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.expiry import hourly_rows
from ig_story_metrics.report.audit import AuditReport, DayRun, JobCost
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import Settings
from ig_story_metrics.storage import Lake

Job = Literal["hourly", "sweep"]
HOUR = timedelta(hours=1)
SWEEP_EVERY = timedelta(minutes=10)
SWEEP_OFFSET = timedelta(minutes=5)  # cron "5-59/10 * * * *" (deployment/deploy.sh)
MAX_HOURS = MAX_REPLAY_HOURS


@dataclass(frozen=True, slots=True)
class Tick:
    """One scheduled run."""

    at: datetime
    job: Job


def schedule(start: datetime, end: datetime, *, sweeps: bool = True) -> list[Tick]:
    """The runs production makes in `[start, end)`, in time order."""
    ticks: list[Tick] = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        moments: list[Tick] = [Tick(hour, "hourly")]
        if sweeps:
            moments += [Tick(hour + SWEEP_OFFSET + k * SWEEP_EVERY, "sweep") for k in range(6)]
        ticks += [t for t in moments if start <= t.at < end]
        hour += HOUR
    return ticks


def _add(cost: JobCost, report: RunReport) -> None:
    cost.runs += 1
    cost.failed_runs += not report.ok
    cost.stored_rows += sum(a.stored_rows for a in report.accounts)
    cost.operations += sum(a.operations for a in report.accounts)
    cost.http_requests += sum(a.http_requests for a in report.accounts)


async def replay(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    clock: VirtualClock,
    ticks: Sequence[Tick],
    *,
    lake: Lake,
    plan: sweep.Plan = "lake",
    on_run: Callable[[Tick, RunReport], None] | None = None,
) -> DayRun:
    """Run every tick at its moment on `clock`, each finalizing as in production (`run`); what
    each job cost is in the answer."""
    if not ticks:
        raise ValueError("nothing to replay")
    started = time.monotonic()
    day = DayRun(start=ticks[0].at, end=ticks[-1].at)
    for tick in ticks:
        clock.set(tick.at)
        if tick.job == "hourly":
            report = await hourly.capture_async(
                settings, accounts, tokens, lake=lake, clock=clock, finals=True
            )
            _add(day.hourly, report)
        else:
            report = await sweep.sweep_async(
                settings, accounts, tokens, lake=lake, clock=clock, plan=plan, finals=True
            )
            _add(day.sweep, report)
        if on_run is not None:
            on_run(tick, report)
    day.duration_seconds = round(time.monotonic() - started, 3)
    return day


def run(
    settings: Settings,
    accounts: Sequence[Account],
    tokens: Mapping[str, SecretStr],
    clock: VirtualClock,
    ticks: Sequence[Tick],
    *,
    lake: Lake,
    plan: sweep.Plan = "lake",
    on_run: Callable[[Tick, RunReport], None] | None = None,
) -> DayRun:
    """The synchronous entry point of `replay` (the CLI's demo, the benchmark)."""
    return asyncio.run(
        replay(settings, accounts, tokens, clock, ticks, lake=lake, plan=plan, on_run=on_run)
    )


def audit_replay(lake: Lake, day: DayRun, now: datetime) -> AuditReport:
    """The audit of the replayed days as of `now` (the final rows the runs built included); fills
    in `day`'s two coverage figures: with the sweeps, and with the hourly snapshots alone (what
    the same day gives without sweeps)."""
    frame, days = read_days(lake, now=now, days=(now.date() - day.start.date()).days + 1)
    finals = stored_final_rows(lake, frame, days, now)
    report = report_for(frame, lake.url(""), now=now, days=days, final_rows=finals)
    day.share_with_sweeps = report.final_share
    day.share_hourly_only = report_for(hourly_rows(frame), "", now=now, days=days).final_share
    return report
