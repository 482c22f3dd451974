"""Logs for people on a terminal and for Cloud Logging: one call to set up, one to log a run.

    configure(fmt=None, stream=None)   once per process (calling it again replaces the setup)
    log_report(report)                 after every run: its entries, all derived from the report

Formats. `json` writes one JSON object per line, which Cloud Logging turns into a structured entry:

    {"severity": "WARNING", "message": "NPI: 2 stories below the viewer threshold ...",
     "time": "2026-11-24T15:30:01.123Z", "logger": "ig_story_metrics.run",
     "event": "below_threshold", "run_id": "20261124T153000Z-1a2b3c4d", "account": "NPI", ...}

`severity` is DEBUG, INFO, WARNING, ERROR or CRITICAL; `message` is the human sentence; every
`extra={...}` field of the logging call becomes a top-level field (`jsonPayload.run_id` in a
Cloud Logging query); an exception's traceback goes to `stack_trace`, where Error Reporting finds it.
`text` writes `HH:MM:SS LEVEL    message` for a person. The format is, in this order: the `fmt`
argument; else `LOG_FORMAT` (`json` or `text`); else `json` when the stream is not a terminal.

The entries of a run (`log_report`), each with `event`, `run_id` and, per account, `account`:

| event             | severity | when                                                               |
| ----------------- | -------- | ------------------------------------------------------------------ |
| `account`         | INFO     | an account succeeded: its counts, requests, retries, waits, time   |
| `account_failed`  | ERROR    | an account failed: the error, and what was still stored            |
| `below_threshold` | WARNING  | stories Meta withholds for too few viewers (their ids)             |
| `rejected_metrics`| WARNING  | metrics Meta refused; stored as null                               |
| `story_problems`  | WARNING  | stories captured partly or not at all (partial, expired, error...) |
| `account_warning` | WARNING  | each warning the account's report carries                          |
| `run_summary`     | INFO     | exactly one per run, with the totals; ERROR when an account failed |

Secrets. A filter on the handler passes every message, argument, extra field and traceback through
`ig_story_metrics.graph.errors.redact()` (which masks `access_token=`, `appsecret_proof=` and bearer
values) and masks every value given to `register_secrets()` (the run's tokens), as a last line of
defence: nothing is meant to log a token in the first place. `scrub()` applies the same masking to
any text, for answers that leave the process.

The `httpx` and `httpcore` loggers are set to WARNING: at INFO httpx logs every request URL.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final

from ig_story_metrics.graph.errors import redact
from ig_story_metrics.report import AccountReport, RunReport

FORMATS: Final = ("json", "text")
RUN_LOGGER: Final = "ig_story_metrics.run"
QUIET_LOGGERS: Final = ("httpx", "httpcore")
MASK: Final = "[redacted]"
# Shorter values are not treated as secrets: masking them would garble ordinary text.
MIN_SECRET_LENGTH: Final = 8

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these exact values (tokens) wherever they would appear in a log line or `scrub()`."""
    with _secrets_lock:
        _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


def scrub(text: str) -> str:
    """`text` with token parameters, bearer values and registered secrets masked."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return redact(text)


def _scrub_value(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub(str(k)): _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


class RedactFilter(logging.Filter):
    """Rewrites a record in place so that no handler after it sees a token. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both
            message = f"{record.msg} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        for key in _extra_keys(record):
            setattr(record, key, _scrub_value(record.__dict__[key]))
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [k for k in record.__dict__ if k not in _RECORD_ATTRS and not k.startswith("_")]


def severity(levelno: int) -> str:
    """The Cloud Logging severity of a logging level (custom levels round down)."""
    for level, name in _SEVERITIES:
        if levelno >= level:
            return name
    return "DEBUG"


_SEVERITIES: Final = (
    (logging.CRITICAL, "CRITICAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARNING"),
    (logging.INFO, "INFO"),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: severity, message, time, logger, then the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": severity(record.levelno),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "logger": record.name,
        }
        for key in _extra_keys(record):
            entry.setdefault(key, record.__dict__[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["stack_trace"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`HH:MM:SS LEVEL    message` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(message)s", datefmt="%H:%M:%S")


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that, without a fixed stream, writes to whatever `sys.stdout` is now.

    Functions Framework redirects stdout per request (to add the execution id to JSON lines);
    resolving it at each write keeps our lines going through that redirection.
    """

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream or sys.stdout)
        self._fixed = stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._fixed:
            self.stream = sys.stdout
        super().emit(record)


def choose_format(fmt: str | None, stream: IO[str], env: Mapping[str, str] | None = None) -> str:
    """`fmt`, else LOG_FORMAT, else `json` unless `stream` is a terminal (then `text`)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt
    wanted = (os.environ if env is None else env).get("LOG_FORMAT", "").strip().lower()
    if wanted in FORMATS:
        return wanted
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def configure(fmt: str | None = None, stream: IO[str] | None = None) -> None:
    """Send the process's logging (root logger, INFO and up) to `stream` (default: stdout).

    Idempotent: the root logger ends up with exactly this one handler, whatever was there
    before (Functions Framework's own handler included, which would print entries twice).
    An unknown `LOG_FORMAT` is reported as a WARNING entry and the format chosen by terminal.
    """
    out = stream if stream is not None else sys.stdout
    chosen = choose_format(fmt, out)
    handler = _Handler(stream)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    wanted = os.environ.get("LOG_FORMAT", "").strip()
    if fmt is None and wanted and wanted.lower() not in FORMATS:
        logging.getLogger(__name__).warning(
            "LOG_FORMAT=%s is not json or text; logging as %s",
            wanted,
            chosen,
            extra={"event": "bad_log_format"},
        )


def log_report(report: RunReport, logger: logging.Logger | None = None) -> None:
    """Log one run: per account INFO or ERROR, WARNINGs for what Meta withheld, one summary."""
    log = logger or logging.getLogger(RUN_LOGGER)
    for account in report.accounts:
        _log_account(log, report.run_id, account)
    failed = [a.account for a in report.accounts if not a.ok]
    totals = {
        key: sum(getattr(a, key) for a in report.accounts)
        for key in (
            "listed",
            "captured",
            "below_threshold",
            "failed",
            "stored_rows",
            "http_requests",
            "retries",
            "waits",
        )
    }
    wait_seconds = round(sum(a.wait_seconds for a in report.accounts), 3)
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
            "ok": report.ok,
            "fetched_at": report.fetched_at.isoformat(),
            "api_version": report.api_version,
            "storage_url": report.storage_url,
            "accounts": [a.account for a in report.accounts],
            "failed_accounts": failed,
            **totals,
            "files_written": sum(len(a.files) for a in report.accounts),
            "wait_seconds": wait_seconds,
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
        "http_requests": account.http_requests,
        "retries": account.retries,
        "waits": account.waits,
        "wait_seconds": account.wait_seconds,
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
