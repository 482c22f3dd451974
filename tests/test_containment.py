"""One account's failure, of any kind, stays inside that account (a hostile Graph API over a real
socket): the others are captured and stored, the report says who failed and why, exit code 1."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.graph import outcome
from ig_story_metrics.jobs import hourly
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.report.models import AccountReport, RunReport
from ig_story_metrics.settings import load_settings, resolve_tokens

from .conftest import SECRET_TOKEN, run_cli
from .hostile import HostileGraph, HostileStory, Reply, bad_gzip, graph_error, reply

FAST = {
    "IG_BACKOFF_BASE_SECONDS": "0.001",
    "IG_BACKOFF_MAX_SECONDS": "0.005",
    "IG_MAX_ATTEMPTS": "3",
}
UNKNOWN_ERROR = (500, graph_error("An unknown error occurred", 1))
NOT_ENOUGH_VIEWERS = (
    400,
    graph_error("(#10) Not enough viewers for the media to show insights", 10),
)
# name -> (ig_user_id, stories)
HOSTILE = {
    "GOOD": ("1001", [HostileStory("11"), HostileStory("12")]),
    "GZIP": ("1002", [HostileStory("21")]),
    "SURR": ("1003", [HostileStory("31", caption="lone \ud800 surrogate"), HostileStory("32")]),
    "Y9999": ("1004", [HostileStory("41", timestamp="9999-12-31T12:00:00+0000"), HostileStory("42")]),
    "HUGE": ("1005", [HostileStory("51", values={"views": 2**70})]),
    "ALLERR": ("1006", [HostileStory(s, insights_answer=UNKNOWN_ERROR) for s in ("61", "62")]),
    "FEW": ("1007", [HostileStory(s, insights_answer=NOT_ENOUGH_VIEWERS) for s in ("71", "72")]),
}  # fmt: skip


@pytest.fixture(scope="module")
def graph() -> Iterator[HostileGraph]:
    """The hostile API: GZIP's listing is never decodable; the others lie in their stories."""
    with HostileGraph({uid: stories for uid, stories in HOSTILE.values()}) as server:
        server.routes["/1002/stories"] = bad_gzip
        yield server


def accounts_toml(path: Path, names: list[str]) -> Path:
    lines = [f'[accounts.{n}]\nig_user_id = "{HOSTILE[n][0]}"\n' for n in names]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def env(
    graph: HostileGraph, tmp_path: Path, names: list[str], token: str = SECRET_TOKEN
) -> dict[str, str]:
    return {
        "IG_ACCESS_TOKEN": token,
        "IG_ACCOUNTS_FILE": str(accounts_toml(tmp_path / "accounts.toml", names)),
        "IG_GRAPH_API_URL": graph.url,
        "STORAGE_URL": str(tmp_path / "lake"),
        **FAST,
    }  # fmt: skip


def run(
    graph: HostileGraph, tmp_path: Path, names: list[str], token: str = SECRET_TOKEN
) -> RunReport:
    settings = load_settings(env(graph, tmp_path, names, token))
    accounts = [Account(n, HOSTILE[n][0]) for n in names]
    return hourly.run(settings, accounts, resolve_tokens(settings, accounts, env={}))


def rows(tmp_path: Path, account: str) -> dict[str, dict[str, object]]:
    frame = pl.read_parquet(tmp_path / f"lake/Instagram/{account}/insights/stories/*/*.parquet")
    return {row["story_id"]: row for row in frame.iter_rows(named=True)}


def by_name(report: RunReport) -> dict[str, AccountReport]:
    return {a.account: a for a in report.accounts}


def test_hostile_payloads_stay_inside_their_account_or_story(
    graph: HostileGraph, tmp_path: Path
) -> None:
    """Invalid gzip fails its account only; a lone surrogate, year 9999 and 2**70 cost one story at
    most; every other story is stored with its values; exit code 1 names GZIP and why."""
    report = run(graph, tmp_path, ["GOOD", "GZIP", "SURR", "Y9999", "HUGE"])
    accounts = by_name(report)
    assert report.exit_code == 1
    assert [a.account for a in report.accounts if not a.ok] == ["GZIP"]
    assert "response body is not JSON" in (accounts["GZIP"].error or "")
    assert not (tmp_path / "lake/Instagram/GZIP").exists()
    assert {k: v["insights_status"] for k, v in rows(tmp_path, "GOOD").items()} == {
        "11": "ok",
        "12": "ok",
    }

    surrogate = rows(tmp_path, "SURR")
    assert surrogate["32"]["insights_status"] == "ok"
    # a lone surrogate cannot be stored as UTF-8: the listing marks it U+FFFD, every value is kept
    assert surrogate["31"]["insights_status"] == "ok"
    assert surrogate["31"]["caption"] == "lone \ufffd surrogate"
    assert surrogate["31"]["views"] == 7

    far = rows(tmp_path, "Y9999")
    assert far["42"]["insights_status"] == "ok"
    # the year-9999 story is never stored with a made-up time: it is named, as a warning or a row
    named = any("41" in w for w in accounts["Y9999"].warnings)
    assert named or far["41"]["insights_status"] == "error"

    huge = rows(tmp_path, "HUGE")["51"]
    assert huge["views"] is None  # beyond 64 bits: not read, never a wrong number
    assert huge["reach"] == 7
    assert all(accounts[n].ok for n in ("GOOD", "SURR", "Y9999", "HUGE"))


def test_an_account_whose_stories_all_failed_has_failed(
    graph: HostileGraph, tmp_path: Path
) -> None:
    """Every story of ALLERR ended in error: the account failed, with the reason; FEW's stories are
    all below 5 viewers, which is no error: FEW succeeded."""
    report = run(graph, tmp_path, ["GOOD", "ALLERR", "FEW"])
    accounts = by_name(report)
    assert report.exit_code == 1
    assert not accounts["ALLERR"].ok
    assert "not one of 2 stories got a metric" in (accounts["ALLERR"].error or "")
    assert "unknown error" in (accounts["ALLERR"].error or "")
    assert accounts["ALLERR"].stored_rows == 2  # the rows say what happened, all the same
    assert accounts["FEW"].ok
    assert accounts["FEW"].statuses == {"not_enough_viewers": 2}
    assert accounts["GOOD"].ok


def test_a_bug_in_one_story_makes_that_story_error(
    graph: HostileGraph,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug turning one story's insights into values (injected) gives that story an `error` row
    and its traceback to the log at ERROR; the account's other story is captured."""
    real = outcome.story_outcome

    def buggy(story, results, now, **kwargs):  # type: ignore[no-untyped-def]
        if story.id == "11":
            raise KeyError("a bug in our code")
        return real(story, results, now, **kwargs)

    monkeypatch.setattr(outcome, "story_outcome", buggy)
    with caplog.at_level(logging.ERROR):
        report = run(graph, tmp_path, ["GOOD"])
    assert report.exit_code == 0
    stored = rows(tmp_path, "GOOD")
    assert stored["12"]["insights_status"] == "ok"
    assert stored["11"]["insights_status"] == "error"
    assert "KeyError" in str(stored["11"]["insights_error"])
    crashes = [r for r in caplog.records if getattr(r, "event", None) == "story_crash"]
    assert len(crashes) == 1
    assert crashes[0].exc_info is not None


BUGGY_CLI = """
import ig_story_metrics.jobs.capture as capture
real = capture.list_stories
async def buggy(client, session):
    if session.account == "SURR":
        raise ZeroDivisionError("a bug in our code")
    return await real(client, session)
capture.list_stories = buggy
from ig_story_metrics.cli import main
main()
"""


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_bug_in_one_account_is_exit_1_and_a_traceback_in_the_log_only(
    graph: HostileGraph, tmp_path: Path, log_format: str
) -> None:
    """The CLI with a bug injected into one account's capture: the others stored, exit 1, the
    report names the account and the error; the traceback is an ERROR log entry's `stack_trace`
    (json) and never printed on the terminal (text)."""
    environ = {**env(graph, tmp_path, ["GOOD", "SURR"]), "LOG_FORMAT": log_format}
    result = run_cli(
        ["run", "--all", "--json"], environ, tmp_path, script=[sys.executable, "-c", BUGGY_CLI]
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    failed = {a["account"]: a["error"] for a in report["accounts"] if not a["ok"]}
    assert list(failed) == ["SURR"]
    assert "ZeroDivisionError: a bug in our code" in failed["SURR"]
    assert rows(tmp_path, "GOOD")
    if log_format == "json":
        entries = [json.loads(line) for line in result.stderr.splitlines()]
        crash = next(e for e in entries if e.get("event") == "account_crash")
        assert crash["severity"] == "ERROR"
        assert crash["account"] == "SURR"
        assert "Traceback" in crash["stack_trace"]
        assert "ZeroDivisionError" in crash["stack_trace"]
    else:
        assert "Traceback" not in result.stderr
        assert "ZeroDivisionError at" in result.stderr  # the place, on the log line itself


def test_a_token_meta_echoes_is_stored_and_printed_nowhere(
    graph: HostileGraph, tmp_path: Path
) -> None:
    """Meta echoes the caller's token in an insights error: the lake, the report and its JSON
    never hold it, though nothing registered the token before the run."""
    token = f"EAAEcho{uuid.uuid4().hex}"  # a token no other test registered
    echo = (500, graph_error(f"An unknown error occurred for access token {token}", 1))
    story = HostileStory("81", insights_answer=echo)
    HOSTILE["ECHO"] = ("1008", [story])
    graph.accounts["1008"], graph.stories["81"] = [story], story
    report = run(graph, tmp_path, ["ECHO"], token=token)
    assert "[redacted]" in str(rows(tmp_path, "ECHO")["81"]["insights_error"])
    written = [p for p in (tmp_path / "lake").rglob("*") if p.is_file()]
    assert written
    assert all(token.encode() not in p.read_bytes() for p in written)
    assert token not in report.to_json()


def test_an_undecodable_answer_is_retried_like_a_transient_error(
    graph: HostileGraph, tmp_path: Path
) -> None:
    """One answer with an invalid gzip body, then good ones: retried, and everything is captured."""
    calls: list[str] = []

    def once(server: HostileGraph, path: str, *rest: object) -> Reply:
        calls.append(path)
        if len(calls) == 1:
            return bad_gzip(server, path)
        return reply({"data": [s.listing() for s in server.accounts["1001"]]})

    graph.routes["/1001/stories"] = once
    try:
        report = run(graph, tmp_path, ["GOOD"])
    finally:
        del graph.routes["/1001/stories"]
    assert report.exit_code == 0, report.to_json()
    assert report.accounts[0].retries == 1
    assert len(calls) == 2
    assert set(rows(tmp_path, "GOOD")) == {"11", "12"}
