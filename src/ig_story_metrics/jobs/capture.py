"""The per-account capture shared by the jobs: list, fetch, build rows, store; never raises.

Per account: list the live stories, fetch their insights (oldest first, closest to expiry), turn
them into rows, add them to the day's file. A story always gets its row when it was listed: metrics
that could not be read are null, with the status saying why. Every failure ends up in the account's
report, never raised, so one account never stops the others: a Graph or storage error as its
message, anything else (a bug, a value nobody foresaw) as one line in the report and its traceback
in the log at ERROR (`account_crash`). A story whose values cannot be stored gets an `error` row;
an account none of whose stories got a metric because of errors has failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, Deadline, utc_now
from ig_story_metrics.errors import StorageError
from ig_story_metrics.graph.advice import account_advice
from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, GraphError
from ig_story_metrics.graph.outcome import Outcome, read_outcomes
from ig_story_metrics.graph.stories import Listing, list_stories
from ig_story_metrics.jobs.archive import Archived
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.snapshot import SNAPSHOTS, Capture, snapshot_row
from ig_story_metrics.model.story import Story, oldest_first
from ig_story_metrics.redact import scrub
from ig_story_metrics.report.models import AccountReport, StoryProblem
from ig_story_metrics.storage import Lake, LockBusy, WriteResult

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

StoryFilter = Callable[[Sequence[Story]], Sequence[Story]]
# Where a job's stories come from: the listing (default), or a plan made beforehand (the sweep's
# stories from the lake's last hourly listing).
StorySource = Callable[[GraphClient, Session], Awaitable[Listing]]
# The media archive of a run (jobs/archive.py): runs beside the insights calls, never raises.
Archiver = Callable[[Account, Sequence[Story]], Awaitable[Archived]]
# Told of each account's partition of the day as stored, or None when the run stored nothing for
# it (jobs/finalize.Finals); not told when its rows could not be stored. Never raises.
AfterStore = Callable[[Account, date, "pl.DataFrame | None"], None]
log = logging.getLogger(__name__)


def new_run_id(at: datetime) -> str:
    return f"{at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


T = TypeVar("T")
JUDGED_WRITES = 8  # inline writes stop once most of the last 8 waited SLOW_WAIT_SECONDS or more
SLOW_WAIT_SECONDS = 0.02  # some 5 times what a write waits for a local disk's fsyncs here


class Writes:
    """Where a run stores its accounts' rows: in its pool of `Backend.writers` threads, or, on a
    backend whose writes cost CPU and not waits (a local folder: `Backend.inline`), on the event
    loop's own thread. A write handed to a thread makes the threads hand the interpreter over at
    each of its system calls (some 90 for an account's first write of the day): at 1,000 accounts
    x 20 stories on 2 CPUs, 10 interleaved pairs of runs took 9.4-11.8 s of CPU inline against
    10.6-13.3 s in 2 threads (each pair lower, by 0.6-2.6 s), with 41,000 voluntary context
    switches instead of 73,000, in the same wall time.

    An inline write never waits on another writer: a lock held elsewhere (`LockBusy`) sends it
    to the pool, which waits for it. Once most of the last `JUDGED_WRITES` inline writes waited
    `SLOW_WAIT_SECONDS` or more off the CPU (a slow disk, a network mount), the run's later
    writes go to the pool: the loop would wait with them."""

    def __init__(self, pool: Executor | None, *, inline: bool) -> None:
        self.pool = pool
        self.inline = inline
        self.waited: deque[bool] = deque(maxlen=JUDGED_WRITES)  # whether each write waited long

    async def run(self, write: Callable[[bool], T]) -> T:
        """`write(wait)`'s result: inline with `wait` false when it can, else in the pool."""
        if self.inline:
            started, cpu = time.monotonic(), time.thread_time()
            try:
                return write(False)
            except LockBusy:
                pass
            finally:
                worked = time.thread_time() - cpu
                self.waited.append(time.monotonic() - started - worked >= SLOW_WAIT_SECONDS)
                self.inline = sum(self.waited) <= JUDGED_WRITES // 2
        return await asyncio.get_running_loop().run_in_executor(self.pool, write, True)


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every account of one run shares: its id, its moment, the API version, the deadline
    of the write phase."""

    run_id: str
    fetched_at: datetime
    api_version: str
    write_deadline: Deadline | None = None
    capture: Capture = "hourly"
    archive: Archiver | None = None  # the media archive (hourly runs with IG_ARCHIVE_MEDIA on)
    finals: AfterStore | None = None  # the final values, once an account's rows are stored
    # where the rows are stored (by default: in asyncio's threads)
    writes: Writes = field(default_factory=lambda: Writes(None, inline=False))


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
    `source` replaces the listing call (a plan made beforehand); `ctx.archive` archives the
    stories' media while their insights are read.
    """
    started = time.monotonic()
    report = AccountReport(account=account.name, ig_user_id=account.ig_user_id)
    session = Session(account.name, account.ig_user_id, token)
    rows: list[dict[str, object]] = []
    try:
        media = None
        try:
            # its insights may share batches with other accounts of its token while it is a member
            with client.packer.member(session):
                listing = await (source or list_stories)(client, session)
                report.listed = len(listing.stories)
                report.warnings.extend(scrub(why) for why in listing.skipped)
                chosen = listing.stories if select is None else select(listing.stories)
                report.not_due = report.listed - len(chosen)
                stories = oldest_first(chosen)
                if ctx.archive:  # media downloads run beside the insights calls
                    media = asyncio.ensure_future(ctx.archive(account, stories))
                read = await read_outcomes(client, session, stories, clock)
        finally:
            archived = await media if media else None
        report.warnings.extend(scrub(why) for why in read.warnings)
        rows = _rows(account, stories, read.outcomes, ctx, report)
        if archived is not None:
            _media(rows, archived, report)
        report.rejected_metrics = read.refused_metrics
        _stop_if(read.error or listing.error)  # the rows above are stored all the same
    except AccountFatal as exc:
        fail(report, account_advice(account, exc))
    except GraphError as exc:
        fail(report, f"Graph API: {exc.describe()}")
    except Exception as exc:  # a bug, or a value nobody foresaw: this account stops, not the run
        crash(report, exc, "the capture")
    report.take_counters(session.counters)
    if rows:
        await _store(lake, account, ctx, rows, report)  # tells ctx.finals when the rows are in
    elif ctx.finals is not None:  # nothing to store, the account's earlier snapshots still count
        ctx.finals(account, ctx.fetched_at.date(), None)
    _fail_without_metrics(report)
    report.duration_seconds = round(time.monotonic() - started, 3)
    return report


def _media(rows: list[dict[str, object]], archived: Archived, report: AccountReport) -> None:
    """Each row's `media_path`, and what the archive did, in the report (a warning per failure)."""
    for row in rows:
        row["media_path"] = archived.paths.get(str(row["story_id"]))
    report.media_archived = archived.written
    report.media_failed = {k: scrub(v) for k, v in archived.failed.items()}
    report.warnings.extend(
        f"media of story {story_id} not archived (tried again next run): {why}"
        for story_id, why in report.media_failed.items()
    )


def _stop_if(failure: Exception | None) -> None:
    """Raise what stopped the account (after its stories got their rows)."""
    if failure is not None:
        raise failure


def fail(report: AccountReport, why: str) -> None:
    """The account failed, for this (scrubbed) reason."""
    report.ok = False
    report.error = scrub(why)


def crash(report: AccountReport, exc: Exception, during: str) -> None:
    """An unexpected exception: one line in the report, the traceback in the log at ERROR."""
    fail(report, f"unexpected error in {during} ({type(exc).__name__}: {exc}); see the log")
    log.error(
        "%s: unexpected error in %s",
        report.account,
        during,
        exc_info=exc,
        extra={"event": "account_crash", "account": report.account, "error": report.error},
    )


def _rows(
    account: Account,
    stories: Sequence[Story],
    outcomes: dict[str, Outcome],
    ctx: RunContext,
    report: AccountReport,
) -> list[dict[str, object]]:
    """One row per story, counted in the report by status."""
    rows = [_story_row(account, story, outcomes.get(story.id), ctx) for story in stories]
    statuses: Counter[str] = Counter()
    for row in rows:
        status, error = str(row["insights_status"]), row["insights_error"]
        statuses[status] += 1
        if status != "ok":
            problem = StoryProblem(
                story_id=str(row["story_id"]),
                status=status,
                error=error if isinstance(error, str) else None,
            )
            report.problems.append(problem)
    report.count(statuses)
    return rows


def _story_row(
    account: Account, story: Story, outcome: Outcome | None, ctx: RunContext
) -> dict[str, object]:
    """The story's row. A story whose values cannot all be stored (text that is not Unicode, a
    number beyond 64 bits) or whose insights could not be turned into values gets an `error` row
    saying why; what could be stored is kept. Never raises for one story's data."""
    fields: dict[str, Any] = {
        "account": account.name,
        "ig_user_id": account.ig_user_id,
        "story": story,
        "fetched_at": ctx.fetched_at,
        "run_id": ctx.run_id,
        "api_version": ctx.api_version,
        "capture": ctx.capture,
    }
    if outcome is None:  # read_outcomes gives every story one; never a row without a status
        outcome = ({}, "error", "no outcome was computed for this story")
    try:
        metrics, status, error = outcome
        row = snapshot_row(**fields, metrics=metrics, status=status, error=error)
    except Exception as exc:  # one story's data must not stop its account
        log.exception(
            "%s: story %s: unexpected error reading its insights",
            account.name,
            story.id,
            extra={"event": "story_crash", "account": account.name, "story_id": story.id},
        )
        why = f"unexpected error reading the insights ({type(exc).__name__}: {exc})"
        row = snapshot_row(**fields, metrics={}, status="error", error=why)
    unstorable = SNAPSHOTS.unstorable(row)
    if not unstorable:
        return row
    why = "; ".join(f"{column} {problem}" for column, problem in unstorable.items())
    earlier = row["insights_error"]
    row.update(dict.fromkeys(unstorable))
    row["insights_status"] = "error"
    row["insights_error"] = scrub(
        f"values that cannot be stored were left null: {why}" + (f"; {earlier}" if earlier else "")
    )
    return row


def _fail_without_metrics(report: AccountReport) -> None:
    """An account none of whose stories got a metric, because of errors, has failed: exit 1 and
    HTTP 502 must say so. Stories Meta withholds below 5 viewers are no error."""
    errors = report.statuses.get("error", 0)
    if not report.ok or report.captured or not errors:
        return
    first = next((p.error for p in report.problems if p.status == "error" and p.error), None)
    stories = sum(report.statuses.values())
    fail(
        report,
        f"not one of {stories} stories got a metric: {errors} ended in error"
        + (f" ({first})" if first else ""),
    )


async def _store(
    lake: Lake,
    account: Account,
    ctx: RunContext,
    rows: list[dict[str, object]],
    report: AccountReport,
) -> None:
    def append(wait: bool) -> WriteResult:  # the frame too is built where it is written
        frame = SNAPSHOTS.frame(rows)
        day = ctx.fetched_at.date()
        return lake.append(
            SNAPSHOTS, account.name, day, frame, deadline=ctx.write_deadline, wait=wait
        )

    try:
        written = await ctx.writes.run(append)
    except StorageError as exc:
        fail(report, f"storage: {exc} ({len(rows)} rows not stored)")
        report.not_stored = [str(row["story_id"]) for row in rows]
    except Exception as exc:  # rows the lake could not take, or a bug: this account only
        crash(report, exc, f"storing {len(rows)} rows (not stored)")
        report.not_stored = [str(row["story_id"]) for row in rows]
    else:
        if ctx.finals is not None and written.frame is not None:
            ctx.finals(account, ctx.fetched_at.date(), written.frame)
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
