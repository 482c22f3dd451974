"""`finalize`: build the final-values table (`model/final.py`) for the stories that expired in the
last N UTC days (today included), from the snapshots and the stored webhook deliveries.

A story posted on day P expires on P+1: so the partitions rebuilt are the posted dates from the
first expiry day minus one to yesterday, and each is built from the daily snapshot files of P and
P+1 (both files a story spans) and the deliveries received from P to today. Each partition is
replaced whole (`Lake.replace_partition`); one whose bytes would not change is not written.

`after_run()` is the hook of the hourly run and the sweep: it finalizes the last day for the
run's accounts and logs (never raises) when that fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from ig_story_metrics.clock import Deadline
from ig_story_metrics.errors import StorageError
from ig_story_metrics.jobs.webhooks import account_deliveries
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.final import STORY_FINAL, Partition, final_rows
from ig_story_metrics.model.webhook import combine
from ig_story_metrics.report.models import AccountReport, RunReport
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.layout import table_key
from ig_story_metrics.storage.scan import day_range, read_snapshots

log = logging.getLogger("ig_story_metrics.finalize")
DEFAULT_DAYS = 3
HOOK_BUDGET_SECONDS = 30.0


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
) -> FinalizeResult:
    """Rebuild the final table of `accounts` (name -> ig_user_id) for the stories that expired on
    the last `days` UTC days up to `now`. Raises `StorageError` when the lake fails."""
    if days < 1:
        raise ValueError("days must be at least 1")
    last = now.date()
    first = last - timedelta(days=days - 1)
    posted = day_range(first - timedelta(days=1), last - timedelta(days=1))
    snapshots = read_snapshots(lake, day_range(posted[0], last), sorted(accounts))
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


def after_run(
    lake: Lake | None,
    open_lake: Callable[[], Lake],
    accounts: Iterable[Account],
    report: RunReport,
    now: datetime,
) -> FinalizeResult | None:
    """The hook of the hourly run and the sweep: finalize the stories that expired today (and the
    partitions they live in) for the run's accounts; only partitions whose data changed (stories
    expired since, a new delivery) are written. Accounts whose rows the run could not store are
    left out (the bucket is failing: the run's answer must not wait on it again). A failure is an
    ERROR in the log, never the run's: the next run tries again, and `ig-story-metrics finalize`
    rebuilds any range. Writes are bounded by `HOOK_BUDGET_SECONDS`."""
    stored = {a.account for a in report.accounts if not a.not_stored and not _storage_failed(a)}
    chosen = [a for a in accounts if a.name in stored]
    if not chosen:
        return None
    try:
        names = {a.name: a.ig_user_id for a in chosen}
        budget = Deadline(HOOK_BUDGET_SECONDS)
        if lake is not None:  # the caller's: used, not closed
            result = finalize(lake, names, now, days=1, deadline=budget)
        else:
            with open_lake() as opened:
                result = finalize(opened, names, now, days=1, deadline=budget)
    except StorageError as exc:  # the lake's fault, already one line: no traceback
        log.error(  # noqa: TRY400
            "finalize after the run failed: %s", exc, extra={"event": "finalize_failed"}
        )
        return None
    except Exception:  # a bug of ours: the traceback goes to the log
        log.exception("finalize after the run failed", extra={"event": "finalize_failed"})
        return None
    log.info(
        "final values: %d stories, %d partitions written",
        result.stories,
        len(result.written),
        extra={"event": "finalized", **result.to_dict()},
    )
    return result


def _storage_failed(account: AccountReport) -> bool:
    return (account.error or "").startswith("storage")
