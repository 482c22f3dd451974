"""`finalize`: build the final-values table (`model/final.py`) for the stories that expired in the
last N UTC days (today included), from the snapshots and the stored webhook deliveries.

A story posted on day P expires on P+1: so the partitions rebuilt are the posted dates from the
first expiry day minus one to yesterday, and each is built from the daily snapshot files of P and
P+1 (both files a story spans) and the deliveries received from P to today. Each partition is
replaced whole (`Lake.replace_partition`); one whose bytes would not change is not written.

`Finals` is the hook of the hourly run and the sweep: the stories that expired today (and
yesterday, just after midnight), finalized as the accounts' rows are stored (a hundred accounts at
a time), beside the other accounts' calls; it logs (never raises) when that fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from ig_story_metrics.clock import Deadline
from ig_story_metrics.errors import StorageError
from ig_story_metrics.jobs.webhooks import account_deliveries
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.final import STORY_FINAL, Partition, final_rows
from ig_story_metrics.model.webhook import combine
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.layout import table_key
from ig_story_metrics.storage.scan import day_range, read_snapshots

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

log = logging.getLogger("ig_story_metrics.finalize")
DEFAULT_DAYS = 3
HOOK_BUDGET_SECONDS = 30.0
HOOK_CHUNK = 100  # accounts finalized together by the run's hook
# The hook finalizes the stories expired since the run before: up to an hour and a quarter ago
# (an hourly run on the hour, its duration and slack), yesterday's too just after midnight.
HOOK_SINCE = timedelta(minutes=75)


@dataclass(slots=True)
class FinalizeResult:
    """What a finalize did: per partition (account, posted date) its rows and whether it changed."""

    first_day: date
    last_day: date
    partitions: dict[Partition, int] = field(default_factory=dict)
    written: list[Partition] = field(default_factory=list)
    stories: int = 0
    complete: int = 0
    sources: dict[str, int] = field(default_factory=dict)

    def absorb(self, other: FinalizeResult) -> None:
        """Add what another finalize (of other accounts) did."""
        self.first_day, self.last_day = (
            min(self.first_day, other.first_day),
            max(self.last_day, other.last_day),
        )
        self.partitions.update(other.partitions)
        self.written += other.written
        self.stories += other.stories
        self.complete += other.complete
        for source, count in other.sources.items():
            self.sources[source] = self.sources.get(source, 0) + count

    @property
    def complete_share(self) -> float | None:
        return None if not self.stories else round(self.complete / self.stories, 4)

    def to_dict(self) -> dict[str, object]:
        return {
            "expired_from": self.first_day.isoformat(),
            "expired_to": self.last_day.isoformat(),
            "stories": self.stories,
            "complete": self.complete,
            "complete_share": self.complete_share,
            "final_source": dict(sorted(self.sources.items())),
            "partitions": len(self.partitions),
            "partitions_written": len(self.written),
        }


def finalize(
    lake: Lake,
    accounts: Mapping[str, str],
    now: datetime,
    days: int = DEFAULT_DAYS,
    *,
    deadline: Deadline | None = None,
    known: Mapping[tuple[str, date], pl.DataFrame] | None = None,
) -> FinalizeResult:
    """Rebuild the final table of `accounts` (name -> ig_user_id) for the stories that expired on
    the last `days` UTC days up to `now` (`known`: snapshot partitions in hand, not read again).
    Raises `StorageError` when the lake fails."""
    if days < 1:
        raise ValueError("days must be at least 1")
    last = now.date()
    first = last - timedelta(days=days - 1)
    posted = day_range(first - timedelta(days=1), last - timedelta(days=1))
    snapshots = read_snapshots(lake, day_range(posted[0], last), sorted(accounts), known=known)
    hooks = combine(account_deliveries(lake, accounts, day_range(posted[0], last)))
    rows = final_rows(snapshots, hooks, accounts, now)
    result = FinalizeResult(first, last)
    for (name, day), found in sorted(rows.items()):
        if day not in posted:
            continue  # placed outside the range: rebuilding it here would drop its other rows
        frame = STORY_FINAL.frame(found)
        result.partitions[(name, day)] = frame.height
        if lake.replace_partition(STORY_FINAL, name, day, frame, deadline=deadline):
            result.written.append((name, day))
        result.stories += frame.height
        result.complete += sum(bool(r["complete"]) for r in found)
        for row in found:
            source = str(row["final_source"])
            result.sources[source] = result.sources.get(source, 0) + 1
    return result


def partition_url(lake: Lake, partition: Partition) -> str:
    return lake.url(table_key(STORY_FINAL, *partition))


class Finals:
    """The hook of the hourly run and the sweep: the final values of the stories that expired today
    (yesterday's too within HOOK_SINCE of midnight), built as the accounts' rows are stored, a
    hundred accounts at a time (in a worker thread, beside the other accounts' calls), from the
    partitions just written and the earlier days' files. The run neither reads its own files back
    nor holds every account's at once (a run of 1,000 accounts read 2,000 files after its last
    write, and peaked 100 MB higher); one account at a time would cost ten times the CPU (Polars'
    fixed cost per query). Only partitions whose data changed are written, each hundred's writes
    bounded by HOOK_BUDGET_SECONDS. An account whose rows were not stored has none (the bucket is
    failing: the answer must not wait on it again). A failure is an ERROR in the log, never the
    run's: the next run tries again, and `ig-story-metrics finalize` rebuilds any range. `finish()`
    waits for them all, logs one line.

    `leave_alone()` names accounts whose final values cannot have changed since the last hourly
    run built them (a sweep's, with nothing due and no story expired since): the run builds none
    for them unless it stores rows for them after all."""

    def __init__(self, lake: Lake, clock: Callable[[], datetime]) -> None:
        self._lake = lake
        self._clock = clock
        self._ready: list[tuple[Account, date, pl.DataFrame | None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._quiet: set[str] = set()
        self.result: FinalizeResult | None = None
        self.failed = 0
        self._first: Exception | None = None

    def after_store(self, account: Account, day: date, written: pl.DataFrame | None) -> None:
        """The account's rows are stored: `written` is its partition of `day` as stored (None:
        the run stored nothing for it, the lake has what there is; nothing to do for an account
        `leave_alone()` named)."""
        if written is None and account.name in self._quiet:
            return
        self._ready.append((account, day, written))
        if len(self._ready) >= HOOK_CHUNK:
            self._start()

    def _start(self) -> None:
        chunk, self._ready = self._ready, []
        if chunk:
            task = asyncio.ensure_future(self._chunk(chunk))
            self._pending.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._pending.discard)

    def leave_alone(self, accounts: Collection[str]) -> None:
        """`accounts` need no final values from this run unless it stores rows for them: a
        sweep's accounts with nothing due and no story expired since their latest hourly listing,
        whose final values that run built (jobs/sweep.py)."""
        self._quiet.update(accounts)

    async def _chunk(self, chunk: list[tuple[Account, date, pl.DataFrame | None]]) -> None:
        known = {(a.name, day): frame for a, day, frame in chunk if frame is not None}
        now = self._clock()
        days = (now.date() - (now - HOOK_SINCE).date()).days + 1
        try:
            found = await asyncio.to_thread(
                finalize,
                self._lake,
                {a.name: a.ig_user_id for a, _, _ in chunk},
                now,
                days,
                deadline=Deadline(HOOK_BUDGET_SECONDS),
                known=known,
            )
        except Exception as exc:  # the lake's fault, or a bug of ours: in finish()'s log line
            self.failed += len(chunk)
            self._first = self._first or exc
            return
        if self.result is None:
            self.result = found
        else:
            self.result.absorb(found)

    async def finish(self) -> FinalizeResult | None:
        """Wait for every account's final values; log what they did (never raises)."""
        self._start()
        await asyncio.gather(*list(self._pending))
        if self._first is not None:
            more = f" ({self.failed} accounts without final values)"
            if isinstance(self._first, StorageError):  # already one line: no traceback
                log.error(
                    "finalize after the run failed: %s%s",
                    self._first,
                    more,
                    extra={"event": "finalize_failed"},
                )
            else:  # a bug of ours: the traceback goes to the log
                log.error(
                    "finalize after the run failed%s",
                    more,
                    exc_info=self._first,
                    extra={"event": "finalize_failed"},
                )
        if self.result is not None:
            log.info(
                "final values: %d stories, %d partitions written",
                self.result.stories,
                len(self.result.written),
                extra={"event": "finalized", **self.result.to_dict()},
            )
        return self.result
