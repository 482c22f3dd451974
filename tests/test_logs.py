"""Logs: JSON lines for Cloud Logging, plain text on a terminal, entries derived from a run report,
and no token in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ig_story_metrics import logs, redact
from ig_story_metrics.redact import register_secrets, scrub
from ig_story_metrics.report.events import log_report
from ig_story_metrics.report.models import AccountReport, RunReport, StoryProblem
from ig_story_metrics.settings import log_format

from .conftest import SECRET_TOKEN

RUN_ID = "20261124T153000Z-0123abcd"


class Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures logging from scratch; the root logger is put back afterwards."""
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.setattr(redact, "_masker", redact.Masker())  # no secret registered earlier
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)


def json_stream() -> Stream:
    stream = Stream()
    logs.configure("json", stream)
    return stream


def account(name: str, **fields: Any) -> AccountReport:
    return AccountReport(account=name, ig_user_id="17841400000000001", **fields)


def run_report(*accounts: AccountReport) -> RunReport:
    return RunReport(
        run_id=RUN_ID,
        fetched_at=datetime(2026, 11, 24, 15, 30, tzinfo=UTC),
        api_version="v25.0",
        storage_url="gs://bucket",
        accounts=list(accounts),
        duration_seconds=2.5,
    )


def healthy(name: str = "NPI", **fields: Any) -> AccountReport:
    """A successful account; `statuses` decides how many stories were listed and stored."""
    statuses = fields.pop("statuses", {"ok": 4})
    listed = sum(statuses.values())
    defaults: dict[str, Any] = {
        "listed": listed,
        "statuses": statuses,
        "stored_rows": listed,
        "files": [f"/lake/{name}.parquet", f"/lake/{name}_schema.json"],
        "http_requests": 3,
        "retries": 1,
        "waits": 1,
        "wait_seconds": 0.5,
        "duration_seconds": 1.25,
    }
    return account(name, **{**defaults, **fields})


def fail(exc: Exception) -> None:
    raise exc


def by_event(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("event") == event]


def test_json_lines_have_severity_message_time_and_extra_fields() -> None:
    """Each record is one JSON object on one line; `extra` fields are top-level keys."""
    stream = json_stream()
    logging.getLogger("ig_story_metrics.test").warning(
        "two\nlines", extra={"account": "NPI", "counts": {"ok": 2}}
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "two\nlines"
    assert entry["time"].endswith("Z")
    assert entry["logger"] == "ig_story_metrics.test"
    assert entry["account"] == "NPI"
    assert entry["counts"] == {"ok": 2}


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, None),  # below INFO: not written
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
        (logging.WARNING + 5, "WARNING"),  # a custom level rounds down
    ],
)
def test_severity_follows_the_level(level: int, severity: str | None) -> None:
    """Python levels map to Cloud Logging severities; DEBUG is not written at the INFO level."""
    stream = json_stream()
    logging.getLogger("ig_story_metrics.test").log(level, "hello")
    assert [e["severity"] for e in stream.entries()] == ([severity] if severity else [])


def test_exception_goes_to_stack_trace() -> None:
    """A logged exception's traceback is in `stack_trace`, where Error Reporting looks."""
    stream = json_stream()
    try:
        fail(RuntimeError("boom"))
    except RuntimeError:
        logging.getLogger("ig_story_metrics.test").exception("it broke")
    (entry,) = stream.entries()
    assert entry["severity"] == "ERROR"
    assert entry["message"] == "it broke"
    assert "Traceback" in entry["stack_trace"]
    assert "RuntimeError: boom" in entry["stack_trace"]


def test_healthy_run_logs_one_info_summary_with_the_counts() -> None:
    """A run where every account succeeded: one INFO summary with totals, one INFO per account."""
    stream = json_stream()
    log_report(run_report(healthy("NPI"), healthy("LT", retries=2)))
    entries = stream.entries()
    assert {e["severity"] for e in entries} == {"INFO"}
    (summary,) = by_event(entries, "run_summary")
    assert summary["run_id"] == RUN_ID
    assert summary["ok"] is True
    assert summary["accounts"] == ["NPI", "LT"]
    assert summary["failed_accounts"] == []
    assert (summary["listed"], summary["captured"], summary["stored_rows"]) == (8, 8, 8)
    assert (summary["below_threshold"], summary["failed"]) == (0, 0)
    assert (summary["retries"], summary["waits"], summary["wait_seconds"]) == (3, 2, 1.0)
    assert summary["http_requests"] == 6
    assert summary["files_written"] == 4
    assert summary["duration_seconds"] == 2.5
    assert "8 stories listed, 8 captured" in summary["message"]
    per_account = by_event(entries, "account")
    assert [(e["account"], e["run_id"]) for e in per_account] == [("NPI", RUN_ID), ("LT", RUN_ID)]
    assert per_account[1]["retries"] == 2
    assert per_account[0]["duration_seconds"] == 1.25


def test_failed_account_is_an_error_naming_it() -> None:
    """A failed account gets an ERROR entry with its name and error; the summary is ERROR too."""
    stream = json_stream()
    failed = account("MD", ok=False, error="Graph API: Invalid OAuth access token; code 190")
    log_report(run_report(healthy("NPI"), failed))
    entries = stream.entries()
    (error,) = by_event(entries, "account_failed")
    assert error["severity"] == "ERROR"
    assert error["account"] == "MD"
    assert error["run_id"] == RUN_ID
    assert "code 190" in error["error"]
    assert "MD" in error["message"]
    assert "code 190" in error["message"]
    (summary,) = by_event(entries, "run_summary")
    assert summary["severity"] == "ERROR"
    assert summary["ok"] is False
    assert summary["failed_accounts"] == ["MD"]
    assert [e["severity"] for e in by_event(entries, "account")] == ["INFO"]


def test_below_threshold_stories_are_a_warning() -> None:
    """Stories Meta withholds for too few viewers give a WARNING with their count and ids."""
    stream = json_stream()
    npi = healthy(
        "NPI",
        statuses={"ok": 2, "not_enough_viewers": 2},
        problems=[
            StoryProblem(story_id="s1", status="not_enough_viewers", error="not enough viewers"),
            StoryProblem(story_id="s2", status="not_enough_viewers", error="not enough viewers"),
        ],
    )
    log_report(run_report(npi))
    entries = stream.entries()
    (warning,) = by_event(entries, "below_threshold")
    assert warning["severity"] == "WARNING"
    assert warning["account"] == "NPI"
    assert warning["below_threshold"] == 2
    assert warning["story_ids"] == ["s1", "s2"]
    assert not by_event(entries, "story_problems")
    (summary,) = by_event(entries, "run_summary")
    assert summary["severity"] == "INFO"
    assert summary["below_threshold"] == 2


def test_rejected_metrics_are_a_warning() -> None:
    """Metrics Meta refused give a WARNING naming them; partial stories are reported with it."""
    stream = json_stream()
    npi = healthy("NPI", statuses={"ok": 3, "partial": 1}, rejected_metrics=["reposts"])
    log_report(run_report(npi))
    entries = stream.entries()
    (warning,) = by_event(entries, "rejected_metrics")
    assert warning["severity"] == "WARNING"
    assert warning["rejected_metrics"] == ["reposts"]
    assert "reposts" in warning["message"]
    (partial,) = by_event(entries, "story_problems")
    assert partial["statuses"] == {"partial": 1}


def test_stories_without_metrics_are_a_warning_with_their_problems() -> None:
    """Stories of a successful account left without metrics give a WARNING with why."""
    stream = json_stream()
    npi = healthy(
        "NPI",
        statuses={"error": 1, "expired": 1, "ok": 2},
        problems=[
            StoryProblem(story_id="s1", status="error", error="Service unavailable; HTTP 503"),
            StoryProblem(story_id="s2", status="expired", error="gone"),
        ],
        warnings=["listing skipped 1 item without an id"],
    )
    log_report(run_report(npi))
    entries = stream.entries()
    (problems,) = by_event(entries, "story_problems")
    assert problems["severity"] == "WARNING"
    assert problems["statuses"] == {"error": 1, "expired": 1}
    assert [p["story_id"] for p in problems["problems"]] == ["s1", "s2"]
    assert "2 of 4 stories" in problems["message"]
    (warning,) = by_event(entries, "account_warning")
    assert warning["severity"] == "WARNING"
    assert warning["warning"] == "listing skipped 1 item without an id"


def test_text_format_when_log_format_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_FORMAT=text gives plain lines, even when the stream is not a terminal."""
    monkeypatch.setenv("LOG_FORMAT", "text")
    stream = Stream(tty=False)
    logs.configure(stream=stream, setting=log_format())
    log_report(run_report(account("MD", ok=False, error="Graph API: bad token")))
    lines = stream.getvalue().splitlines()
    assert lines
    assert not any(line.lstrip().startswith("{") for line in lines)
    assert any("ERROR" in line and "MD FAILED: Graph API: bad token" in line for line in lines)


def test_log_format_json_wins_over_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_FORMAT=json gives JSON lines even on a terminal."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    stream = Stream(tty=True)
    logs.configure(stream=stream, setting=log_format())
    logging.getLogger("ig_story_metrics.test").info("hello")
    assert stream.entries()[0]["message"] == "hello"


@pytest.mark.parametrize(("tty", "is_json"), [(True, False), (False, True)])
def test_format_follows_isatty_without_log_format(tty: bool, is_json: bool) -> None:
    """Without LOG_FORMAT: plain text on a terminal, JSON lines otherwise."""
    stream = Stream(tty=tty)
    logs.configure(stream=stream, setting=log_format())
    logging.getLogger("ig_story_metrics.test").info("hello")
    line = stream.getvalue().strip()
    assert "hello" in line
    assert line.startswith("{") is is_json
    if not is_json:
        assert line.endswith("INFO     hello")


def test_explicit_format_wins_over_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """`configure("json")` (the Cloud Function) logs JSON whatever LOG_FORMAT says."""
    monkeypatch.setenv("LOG_FORMAT", "text")
    stream = json_stream()
    logging.getLogger("ig_story_metrics.test").info("hello")
    assert stream.entries()[0]["message"] == "hello"


def test_unknown_log_format_is_reported_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown LOG_FORMAT logs a WARNING and the format is chosen by terminal."""
    monkeypatch.setenv("LOG_FORMAT", "xml")
    stream = Stream(tty=False)
    logs.configure(stream=stream, setting=log_format())
    (entry,) = stream.entries()
    assert entry["severity"] == "WARNING"
    assert "LOG_FORMAT=xml" in entry["message"]


def test_unknown_explicit_format_is_an_error() -> None:
    """configure() refuses a format it does not know instead of guessing."""
    with pytest.raises(ValueError, match="log format"):
        logs.configure("yaml", Stream())


def test_configure_is_idempotent() -> None:
    """Configuring twice leaves one handler: every record is written once, to the latest stream."""
    first = json_stream()
    second = json_stream()
    logging.getLogger("ig_story_metrics.test").info("once")
    assert first.getvalue() == ""
    assert [e["message"] for e in second.entries()] == ["once"]
    assert len(logging.getLogger().handlers) == 1


def test_httpx_request_lines_are_silenced() -> None:
    """httpx and httpcore log at WARNING only: their INFO lines carry full request URLs."""
    stream = json_stream()
    logging.getLogger("httpx").info("HTTP Request: GET https://graph.facebook.com/v25.0/me")
    logging.getLogger("httpcore.connection").info("connect_tcp.started")
    logging.getLogger("httpx").warning("a real problem")
    assert [e["message"] for e in stream.entries()] == ["a real problem"]


def test_without_a_stream_logs_go_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """With no stream given, entries go to whatever sys.stdout is at the time of logging."""
    logs.configure("json")
    logging.getLogger("ig_story_metrics.test").info("to stdout")
    out = capsys.readouterr().out
    assert json.loads(out)["message"] == "to stdout"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_tokens_are_redacted_in_messages_and_fields(fmt: str) -> None:
    """A token planted in a message, its arguments, an extra field or a traceback never appears."""
    stream = Stream()
    logs.configure(fmt, stream)
    log = logging.getLogger("ig_story_metrics.test")
    log.warning(
        "GET https://graph.facebook.com/v25.0/me?fields=id&access_token=%s",
        SECRET_TOKEN,
        extra={
            "url": f"https://graph.facebook.com/me?access_token={SECRET_TOKEN}&x=1",
            "headers": {"Authorization": f"Bearer {SECRET_TOKEN}"},
            "attempts": [f"appsecret_proof={SECRET_TOKEN}"],
        },
    )
    try:
        fail(ValueError(f"bad url ?access_token={SECRET_TOKEN}"))
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert SECRET_TOKEN not in text
    assert "[redacted]" in text
    if fmt == "json":
        first, second = stream.entries()
        assert first["message"].endswith("access_token=[redacted]")
        assert first["url"] == "https://graph.facebook.com/me?access_token=[redacted]&x=1"
        assert first["headers"] == {"Authorization": "Bearer [redacted]"}
        assert first["attempts"] == ["appsecret_proof=[redacted]"]
        assert "access_token=[redacted]" in second["stack_trace"]


def test_registered_secrets_are_masked_anywhere() -> None:
    """A registered token is masked even bare, in a log line and in scrub(); short values are not."""
    stream = json_stream()
    register_secrets([SECRET_TOKEN, "short"])
    logging.getLogger("ig_story_metrics.test").error(
        "token %s was refused", SECRET_TOKEN, extra={"detail": f"token={SECRET_TOKEN}"}
    )
    (entry,) = stream.entries()
    assert entry["message"] == "token [redacted] was refused"
    assert entry["detail"] == "token=[redacted]"
    assert scrub(f"x {SECRET_TOKEN} short") == "x [redacted] short"


def test_a_report_carrying_a_token_is_logged_without_it() -> None:
    """Even a report whose error text carries a token URL is logged with the token masked."""
    stream = json_stream()
    leaky = account("MD", ok=False, error=f"GET /me?access_token={SECRET_TOKEN} failed; code 190")
    log_report(run_report(leaky))
    assert SECRET_TOKEN not in stream.getvalue()
    (error,) = by_event(stream.entries(), "account_failed")
    assert error["error"] == "GET /me?access_token=[redacted] failed; code 190"
