"""The log entries of a run, all derived from its report (`logs.py` is only the plumbing).

    log_report(report)                 after every run

| event             | severity | when                                                               |
| ----------------- | -------- | ------------------------------------------------------------------ |
| `account`         | INFO     | an account succeeded: its counts, requests, retries, waits, time   |
| `account_failed`  | ERROR    | an account failed: the error, and what was still stored            |
| `below_threshold` | WARNING  | stories Meta withholds for too few viewers (their ids)             |
| `rejected_metrics`| WARNING  | metrics Meta refused; stored as null                               |
| `story_problems`  | WARNING  | stories captured partly or not at all (partial, expired, error...) |
| `account_warning` | WARNING  | each warning the account's report carries                          |
| `run_summary`     | INFO     | exactly one per run, with the totals; ERROR when an account failed |

`jobs/capture.py` logs two more, at the moment they happen, with the traceback (`stack_trace`):
`account_crash` (ERROR: an unexpected exception stopped one account) and `story_crash` (ERROR: one
story's insights could not be turned into values; that story's row says `error`).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from ig_story_metrics.model.counters import COUNTER_FIELDS
from ig_story_metrics.report.models import AccountReport, RunReport

RUN_LOGGER: Final = "ig_story_metrics.run"


def log_report(report: RunReport, logger: logging.Logger | None = None) -> None:
    """Log one run: per account INFO or ERROR, WARNINGs for what Meta withheld, one summary."""
    log = logger or logging.getLogger(RUN_LOGGER)
    for account in report.accounts:
        _log_account(log, report.run_id, account)
    failed = [a.account for a in report.accounts if not a.ok]
    totals: dict[str, Any] = {
        key: sum(getattr(a, key) for a in report.accounts)
        for key in (
            "listed",
            "captured",
            "below_threshold",
            "failed",
            "stored_rows",
            *COUNTER_FIELDS,
        )
    }
    totals["wait_seconds"] = round(totals["wait_seconds"], 3)
    outcome = (
        f"{len(report.accounts)}/{len(report.accounts)} accounts ok"
        if not failed
        else f"{len(failed)}/{len(report.accounts)} accounts FAILED ({', '.join(failed)})"
    )
    log.log(
        logging.INFO if report.ok else logging.ERROR,
        "run %s: %s; %d stories listed, %d captured, %d below threshold, %d failed; "
        "%d rows stored in %.1f s (%d requests, %d retries, %d waits)",
        report.run_id,
        outcome,
        totals["listed"],
        totals["captured"],
        totals["below_threshold"],
        totals["failed"],
        totals["stored_rows"],
        report.duration_seconds,
        totals["http_requests"],
        totals["retries"],
        totals["waits"],
        extra={
            "event": "run_summary",
            "run_id": report.run_id,
            "capture": report.capture,
            "ok": report.ok,
            "fetched_at": report.fetched_at.isoformat(),
            "api_version": report.api_version,
            "storage_url": report.storage_url,
            "accounts": [a.account for a in report.accounts],
            "failed_accounts": failed,
            **totals,
            "files_written": sum(len(a.files) for a in report.accounts),
            "duration_seconds": report.duration_seconds,
        },
    )


def _counts(account: AccountReport) -> dict[str, Any]:
    return {
        "listed": account.listed,
        "captured": account.captured,
        "below_threshold": account.below_threshold,
        "failed": account.failed,
        "statuses": account.statuses,
        "stored_rows": account.stored_rows,
        "files": account.files,
        **{name: getattr(account, name) for name in COUNTER_FIELDS},
        "duration_seconds": account.duration_seconds,
    }


def _log_account(log: logging.Logger, run_id: str, account: AccountReport) -> None:
    name = account.account
    base = {"run_id": run_id, "account": name, "ig_user_id": account.ig_user_id}
    counts = _counts(account)
    if account.ok:
        log.info(
            "%s: %d stories listed, %d captured, %d below threshold, %d failed; %d rows stored",
            name,
            account.listed,
            account.captured,
            account.below_threshold,
            account.failed,
            account.stored_rows,
            extra={"event": "account", **base, **counts},
        )
    else:
        log.error(
            "%s FAILED: %s (%d rows stored)",
            name,
            account.error or "unknown error",
            account.stored_rows,
            extra={"event": "account_failed", **base, "error": account.error, **counts},
        )
    _log_story_warnings(log, account, base)


def _log_story_warnings(log: logging.Logger, account: AccountReport, base: dict[str, str]) -> None:
    """WARNINGs for what Meta withheld or refused, and the account's own warnings."""
    name = account.account
    below = [p.story_id for p in account.problems if p.status == "not_enough_viewers"]
    if account.below_threshold:
        log.warning(
            "%s: %d stories below the viewer threshold (Meta withholds their metrics)",
            name,
            account.below_threshold,
            extra={
                "event": "below_threshold",
                **base,
                "below_threshold": account.below_threshold,
                "story_ids": below,
            },
        )
    if account.rejected_metrics:
        log.warning(
            "%s: Meta rejected metrics %s; stored as null",
            name,
            ", ".join(account.rejected_metrics),
            extra={
                "event": "rejected_metrics",
                **base,
                "rejected_metrics": account.rejected_metrics,
            },
        )
    incomplete = {
        status: n
        for status, n in account.statuses.items()
        if status not in {"ok", "not_enough_viewers"} and n
    }
    if incomplete:
        log.warning(
            "%s: %d of %d stories not fully captured (%s)",
            name,
            sum(incomplete.values()),
            account.listed,
            ", ".join(f"{status} {n}" for status, n in incomplete.items()),
            extra={
                "event": "story_problems",
                **base,
                "statuses": incomplete,
                "problems": [p.model_dump() for p in account.problems if p.status in incomplete],
            },
        )
    for warning in account.warnings:
        log.warning(
            "%s: %s", name, warning, extra={"event": "account_warning", **base, "warning": warning}
        )
