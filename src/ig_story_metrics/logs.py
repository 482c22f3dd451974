"""Logging infrastructure for people on a terminal and for Cloud Logging: one call to set up.

    configure(fmt=None, stream=None)   once per process (calling it again replaces the setup)

Formats. `json` writes one JSON object per line, which Cloud Logging turns into a structured entry:

    {"severity": "WARNING", "message": "NPI: 2 stories below the viewer threshold ...",
     "time": "2026-11-24T15:30:01.123Z", "logger": "ig_story_metrics.run",
     "event": "below_threshold", "run_id": "20261124T153000Z-1a2b3c4d", "account": "NPI", ...}

`severity` is DEBUG, INFO, WARNING, ERROR or CRITICAL; `message` is the human sentence; every
`extra={...}` field of the logging call becomes a top-level field (`jsonPayload.run_id` in a
Cloud Logging query); an exception's traceback goes to `stack_trace`, where Error Reporting finds it.
`text` writes `HH:MM:SS LEVEL    message` for a person, an exception as its type and place on the
same line, never a traceback on a terminal. The format is, in this order: the `fmt`
argument; else the `LOG_FORMAT` setting (`json` or `text`, passed in by the entry point from
`settings.log_format()`); else `json` when the stream is not a terminal.

What a run logs is derived from its report in `report/events.py`.

Secrets. A filter on the handler passes every message, argument, extra field and traceback through
`redact.scrub()`, as a last line of defence: nothing is meant to log a token in the first place.

The `httpx` and `httpcore` loggers are set to WARNING: at INFO httpx logs every request URL.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import IO, Any, Final

from ig_story_metrics.redact import scrub, scrub_value

FORMATS: Final = ("json", "text")
QUIET_LOGGERS: Final = ("httpx", "httpcore")

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


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
            setattr(record, key, scrub_value(record.__dict__[key]))
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
    """`HH:MM:SS LEVEL    message` for a person at a terminal.

    An exception stays on the same line, as its type and where it was raised: a terminal shows no
    traceback (the `json` format keeps the whole of it in `stack_trace`).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        exc = saved[0][1] if saved[0] else None
        return line if exc is None else f"{line} [{where(exc)}; LOG_FORMAT=json logs the traceback]"


def where(exc: BaseException) -> str:
    """`ValueError at capture.py:88 in _rows`: an exception's type and innermost frame, one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return (
        f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
    )


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


def choose_format(fmt: str | None, stream: IO[str], setting: str | None = None) -> str:
    """`fmt`, else the LOG_FORMAT `setting`, else `json` unless `stream` is a terminal (`text`)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt
    wanted = (setting or "").strip().lower()
    if wanted in FORMATS:
        return wanted
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def configure(
    fmt: str | None = None, stream: IO[str] | None = None, *, setting: str | None = None
) -> None:
    """Send the process's logging (root logger, INFO and up) to `stream` (default: stdout).

    Idempotent: the root logger ends up with exactly this one handler, whatever was there
    before (Functions Framework's own handler included, which would print entries twice).
    An unknown `LOG_FORMAT` `setting` is reported as a WARNING entry and the format chosen by
    terminal.
    """
    out = stream if stream is not None else sys.stdout
    chosen = choose_format(fmt, out, setting)
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
    wanted = (setting or "").strip()
    if fmt is None and wanted and wanted.lower() not in FORMATS:
        logging.getLogger(__name__).warning(
            "LOG_FORMAT=%s is not json or text; logging as %s",
            wanted,
            chosen,
            extra={"event": "bad_log_format"},
        )
