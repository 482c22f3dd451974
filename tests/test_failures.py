"""Surviving the real Graph API: faults injected by the simulator, over a real socket."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl

from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.jobs import hourly
from ig_story_metrics.simulator import (
    SEED_ACCOUNTS,
    Answer,
    Faults,
    Request,
    Response,
)

from .conftest import (
    FAST,
    FAST_ENV,
    NOW,
    SECRET_TOKEN,
    assert_exact,
    env_for,
    live_count,
    make_server,
    run,
    run_cli,
    stored,
    write_accounts,
)


def test_transient_errors_and_throttling_bursts_lose_nothing(tmp_path: Path) -> None:
    """20% transient failures plus throttling bursts: every story captured, values exact."""
    faults = Faults(seed=3, transient_rate=0.2, throttle_rate=0.03, throttle_seconds=0.05)
    with make_server(faults=faults) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0, report.to_json()
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    below = frame.filter(pl.col("insights_status") == "not_enough_viewers").height
    assert assert_exact(server, frame) == frame.height - below
    assert sum(a.retries for a in report.accounts) > 0
    assert sum(a.waits for a in report.accounts) > 0  # throttling was waited out


def test_dropped_connections_html_pages_and_null_slots_are_retried(tmp_path: Path) -> None:
    """Connections closed mid-request, HTML 502 pages, bodies that are not the gzip they claim
    and null batch slots are retried to success."""
    faults = Faults(seed=5, drop_rate=0.15, html_rate=0.15, null_rate=0.15, corrupt_gzip_rate=0.15)
    with make_server(faults=faults) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0, report.to_json()
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    assert assert_exact(server, frame) > 0
    assert set(frame["insights_status"]) <= {"ok", "not_enough_viewers"}


def test_throttle_waits_for_the_announced_regain_time(tmp_path: Path) -> None:
    """A throttled account waits out estimated_time_to_regain_access instead of failing."""
    faults = Faults(seed=1, throttle_rate=0.05, throttle_seconds=0.3)
    with make_server(faults=faults) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0, report.to_json()
    waited = [a for a in report.accounts if a.waits]
    assert waited
    assert max(a.wait_seconds for a in waited) >= 0.25  # the burst's length, not a tiny backoff


def test_high_usage_pauses_the_account_before_the_wall(tmp_path: Path) -> None:
    """Usage headers at 95% make the client pause between calls; everything is still captured."""
    with make_server(faults=Faults(usage_percent=95)) as server:
        report = run(server, tmp_path, replace(FAST, pause_percent=80))
    assert report.exit_code == 0
    assert all(a.waits >= 1 for a in report.accounts if a.listed)


def test_rejected_metric_costs_only_itself_and_is_asked_once(tmp_path: Path) -> None:
    """views refused with #100 for every story: the row keeps every other metric, views null,
    status partial; an account whose calls go past two batches stops asking for it after its first."""
    with make_server(faults=Faults(rejected_metrics=frozenset({"views"}))) as server:
        report = run(server, tmp_path, IG_MAX_CONCURRENT_ACCOUNTS="1")
        operations = server.simulator.stats.operations
    assert report.exit_code == 0
    frame = stored(tmp_path)
    partial = frame.filter(pl.col("insights_status") == "partial")
    assert partial.height > 0
    assert partial["views"].null_count() == partial.height
    assert partial["reach"].null_count() == 0
    assert partial["navigation"].null_count() == 0
    assert all("views" in (m or "") for m in partial["insights_error"])
    for row in partial.iter_rows(named=True):
        truth = server.simulator.truth(row["story_id"], NOW)
        assert truth is not None
        assert {k: row[k] for k in truth if k != "views"} == {
            k: v for k, v in truth.items() if k != "views"
        }
    assert any(a.rejected_metrics == ["views"] for a in report.accounts)
    # every seed account's calls fit in two batches, sent at once: each story's call for views
    # was asked again without it; and each account's listing (tests/test_scale.py: past two)
    assert operations == live_count(server) * 4 + len(SEED_ACCOUNTS)


def test_unnamed_metric_rejection_is_found_by_probing(tmp_path: Path) -> None:
    """When #100 does not name the metric, one call per metric finds it; the others are kept."""
    with make_server(faults=Faults(rejected_metrics=frozenset({"reposts"}))) as server:
        # the simulator names the metric; make Meta's vaguer message come back instead
        def vague(request: Request, answer: Answer) -> Response:
            status, headers, body = answer()
            if status == 400 and "reposts metric" in json.dumps(body):
                body["error"]["message"] = "(#100) The value must be a valid insights metric"
            return status, headers, body

        server.simulator.override("insights", vague)
        report = run(server, tmp_path)
    frame = stored(tmp_path)
    partial = frame.filter(pl.col("insights_status") == "partial")
    assert partial.height > 0
    assert partial["reposts"].null_count() == partial.height
    assert partial["views"].null_count() == 0
    assert any(a.rejected_metrics == ["reposts"] for a in report.accounts)


def test_expired_token_fails_that_account_with_advice(tmp_path: Path) -> None:
    """An expired token fails its account fast with what to do; the others are captured (exit 1)."""
    with make_server(faults=Faults(expired_tokens=frozenset({"MD"}))) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 1
    md = next(a for a in report.accounts if a.account == "MD")
    assert md.ok is False
    assert md.error is not None
    assert md.error.startswith("token for MD expired on Tuesday, 24-Nov-26")
    assert "create a new long-lived token" in md.error
    # fails fast: its listing, an operation of the run's first batch, is not tried again
    assert (md.operations, md.retries) == (1, 0)
    others = [a for a in report.accounts if a.account != "MD"]
    assert all(a.ok and a.stored_rows == a.listed for a in others)


def test_stories_expiring_mid_run_keep_their_listing_fields(tmp_path: Path) -> None:
    """A story gone between listing and insights gets a row: status expired, listing fields kept."""
    with make_server(faults=Faults(seed=2, expire_rate=0.3)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0
    frame = stored(tmp_path)
    expired = frame.filter(pl.col("insights_status") == "expired")
    assert expired.height > 0
    assert expired["posted_at"].null_count() == 0
    assert expired["permalink"].null_count() == 0
    assert expired["reach"].null_count() == expired.height
    assert frame.height == live_count(server)


def test_faults_beyond_the_budget_end_in_time_and_keep_what_was_captured(tmp_path: Path) -> None:
    """With most calls failing and a 3 s budget, no account waits longer than the Graph share of
    the budget; what it captured is stored, and every story it could not capture is reported with
    the reason."""
    faults = Faults(seed=9, transient_rate=0.7)
    patient = RetryPolicy(max_attempts=20, base_seconds=0.2, max_seconds=1)
    with make_server(faults=faults) as server:
        report = run(server, tmp_path, patient, IG_RUN_BUDGET_SECONDS="3")
    # 20 attempts of up to 1 s each would wait far longer: the budget stopped them
    assert all(a.wait_seconds <= 3 * hourly.GRAPH_SHARE for a in report.accounts)
    assert sum(a.retries for a in report.accounts) > 0
    captured = [a for a in report.accounts if a.stored_rows]
    assert captured
    frame = stored(tmp_path)
    short = frame.filter(pl.col("insights_status").is_in(["partial", "error"]))
    assert short.height > 0
    reasons = short["insights_error"].to_list()
    assert all("budget" in m or "gave up" in m for m in reasons)
    assert assert_exact(server, frame) > 0  # what was captured is right
    # the report names, per account, the stories it could not capture and why
    problems = [p for a in report.accounts for p in a.problems if p.status != "not_enough_viewers"]
    assert {p.story_id for p in problems} == set(short["story_id"])
    assert all(a.ok or "budget" in (a.error or "") for a in report.accounts)


def test_bad_payloads_do_not_crash_the_run(tmp_path: Path) -> None:
    """Missing fields, wrong types and unknown new metrics are parsed tolerantly."""
    with make_server() as server:

        def odd_listing(request: Request, answer: Answer) -> Response:
            status, headers, body = answer()
            if isinstance(body, dict) and body.get("data"):
                body["data"].append({"id": "not-a-number"})
                body["data"][0]["media_type"] = 7
                body["data"][0]["brand_new_field"] = {"x": 1}
            return status, headers, body

        server.simulator.override("stories", odd_listing)
        report = run(server, tmp_path)
    assert report.exit_code == 0
    assert any("without a valid id" in w for a in report.accounts for w in a.warnings)
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    assert frame["media_type"].null_count() >= 1


def test_token_absent_from_every_output_on_every_error_path(tmp_path: Path) -> None:
    """Runs through every fault path print and store nothing that contains the token."""
    faults = Faults(
        seed=4,
        transient_rate=0.2,
        throttle_rate=0.02,
        throttle_seconds=0.05,
        drop_rate=0.05,
        html_rate=0.05,
        null_rate=0.05,
        expire_rate=0.1,
        expired_tokens=frozenset({"RE"}),
        rejected_metrics=frozenset({"views"}),
    )
    accounts = write_accounts(tmp_path / "accounts.toml")
    with make_server(faults=faults) as server:
        env = env_for(server, tmp_path, accounts, **FAST_ENV)
        outputs = [run_cli(["run", "--all", *f], env, tmp_path) for f in ([], ["--json"])]
    assert [r.returncode for r in outputs] == [1, 1]
    for result in outputs:
        assert SECRET_TOKEN not in result.stdout + result.stderr
    report = json.loads(outputs[1].stdout)
    statuses = {s for a in report["accounts"] for s in a["statuses"]}
    assert {"partial", "expired"} <= statuses
    for path in (tmp_path / "lake").rglob("*"):
        if path.is_file():
            assert SECRET_TOKEN.encode() not in path.read_bytes()
