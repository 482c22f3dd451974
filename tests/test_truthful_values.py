"""Truthful values (issue "Truthful values and no lost hour", items 1-7 and 16): every payload shape
and call fault seen in the wild, served by the simulator over a real socket, stored as the truth or
as null with the reason, never as an invented number."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import polars as pl

from ig_story_metrics.model.metrics import NAVIGATION_PARTS, PROFILE_ACTIVITY_PARTS
from ig_story_metrics.model.numbers import as_count
from ig_story_metrics.simulator import Answer, Faults, Request, Response, SimulatorServer

from .conftest import (
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

PARTS = (*NAVIGATION_PARTS.values(), *PROFILE_ACTIVITY_PARTS.values())


def truth(server: SimulatorServer, story_id: str) -> dict[str, int]:
    values = server.simulator.truth(story_id, NOW)
    assert values is not None
    return values


def below_threshold(server: SimulatorServer, frame: pl.DataFrame) -> int:
    return sum(truth(server, s)["reach"] < 5 for s in frame["story_id"])


def assert_all_exact(server: SimulatorServer, frame: pl.DataFrame) -> None:
    """Every story with enough viewers is `ok` and equal to the truth; the others withheld."""
    assert frame.height == live_count(server)
    statuses = frame.group_by("insights_status").len().rows()
    assert assert_exact(server, frame) == frame.height - below_threshold(server, frame), statuses
    assert set(frame["insights_status"]) <= {"ok", "not_enough_viewers"}


def test_breakdown_without_its_total_sums_the_parts(tmp_path: Path) -> None:
    """Breakdowns without `value`/`values[0]`, in UPPER or Mixed case: total = sum of the parts."""
    with make_server(faults=Faults(no_total_rate=1.0, odd_case_rate=1.0)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0, report.to_json()
    frame = stored(tmp_path)
    assert_all_exact(server, frame)
    ok = frame.filter(pl.col("insights_status") == "ok")
    assert (ok["navigation"] > 0).all()
    # a part the present breakdown left out (Meta sends no zero rows) is 0, not null
    assert any(row[p] == 0 for row in ok.iter_rows(named=True) for p in PARTS)


def test_breakdown_without_dimension_keys_is_read(tmp_path: Path) -> None:
    """A single-dimension breakdown without `dimension_keys` fills the parts from its results."""
    with make_server(faults=Faults(no_dimension_keys_rate=1.0)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0, report.to_json()
    assert_all_exact(server, stored(tmp_path))


def test_total_without_breakdown_leaves_the_parts_null(tmp_path: Path) -> None:
    """A total with no `breakdowns`: the parts are null (0 only when the total is 0), `partial`."""
    with make_server(faults=Faults(no_breakdown_rate=1.0)) as server:
        run(server, tmp_path)
    frame = stored(tmp_path).filter(pl.col("insights_status") != "not_enough_viewers")
    assert frame.height > 0
    for row in frame.iter_rows(named=True):
        real = truth(server, row["story_id"])
        assert row["navigation"] == real["navigation"]
        assert row["profile_activity"] == real["profile_activity"]
        for total, parts in (
            ("navigation", NAVIGATION_PARTS),
            ("profile_activity", PROFILE_ACTIVITY_PARTS),
        ):
            expected = 0 if real[total] == 0 else None
            assert {row[p] for p in parts.values()} == {expected}, (row["story_id"], total)
        assert row["insights_status"] == "partial"
        assert "taps_forward" in row["insights_error"]


def test_metrics_left_out_empty_or_not_counts_are_null_and_named(tmp_path: Path) -> None:
    """A metric left out, `"values": []`, "123" or 2**70: null, `partial`, named in insights_error;
    `ok` rows hold every value, exactly."""
    faults = Faults(
        seed=4,
        missing_metric_rate=0.08,
        empty_values_rate=0.08,
        string_value_rate=0.08,
        huge_value_rate=0.08,
    )
    with make_server(faults=faults) as server:
        run(server, tmp_path)
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    assert assert_exact(server, frame) > 0
    partial = frame.filter(pl.col("insights_status") == "partial")
    assert partial.height > 0
    for row in partial.iter_rows(named=True):
        real = truth(server, row["story_id"])
        unread = [c for c in real if row[c] is None]
        assert unread, row["story_id"]
        assert all(row[c] == real[c] for c in real if row[c] is not None)
        named = row["insights_error"].split(
            "not read (left out of Meta's answer, empty, or not a count): "
        )[1]
        assert set(named.split(", ")) == set(unread)


def test_negative_and_fractional_values_are_refused(tmp_path: Path) -> None:
    """reach -3 and replies 1.5 are not counts: null, `partial`, both named."""

    def spoil(request: Request, answer: Answer) -> Response:
        status, headers, body = answer()
        for item in body.get("data", []) if status == 200 else []:
            if item["name"] in ("reach", "replies"):
                item["values"][0]["value"] = -3 if item["name"] == "reach" else 1.5
        return status, headers, body

    with make_server() as server:
        server.simulator.override("insights", spoil)
        run(server, tmp_path)
    frame = stored(tmp_path).filter(pl.col("insights_status") != "not_enough_viewers")
    assert frame.height > 0
    assert frame["reach"].null_count() == frame["replies"].null_count() == frame.height
    assert set(frame["insights_status"]) == {"partial"}
    assert all(m.endswith("not a count): reach, replies") for m in frame["insights_error"])
    assert frame["views"].null_count() == 0


def test_unsupported_get_request_on_a_live_story_is_retried(tmp_path: Path) -> None:
    """100/33 on 30 % of the insights calls of live stories: retried, every value read, none expired."""
    with make_server(faults=Faults(seed=6, unsupported_rate=0.3)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0, report.to_json()
    assert_all_exact(server, stored(tmp_path))
    assert sum(a.retries for a in report.accounts) > 0


def test_persistent_unsupported_call_keeps_the_values_read(tmp_path: Path) -> None:
    """A live, still-listed story whose navigation call always answers 100/33 keeps its other
    values and is `partial` (naming the call), not `expired`."""
    with make_server() as server:
        target = next(
            s.id
            for s in server.simulator.world.live_stories("NPI")
            if truth(server, s.id)["reach"] > 50
        )

        def refuse(request: Request, answer: Answer) -> Response:
            if request.params["media"] == target and request.query.get("metric") == "navigation":
                answer()  # counted like any call, then refused
                return (
                    400,
                    {},
                    {
                        "error": {
                            "message": "Unsupported get request.",
                            "code": 100,
                            "error_subcode": 33,
                        }
                    },
                )
            return answer()

        server.simulator.override("insights", refuse)
        run(server, tmp_path)
    row = stored(tmp_path).filter(pl.col("story_id") == target).row(0, named=True)
    real = truth(server, target)
    assert row["insights_status"] == "partial"
    assert "call for navigation failed" in row["insights_error"]
    assert "gave up after" in row["insights_error"]
    assert row["navigation"] is None
    assert row["taps_forward"] is None
    assert {k: row[k] for k in real if k not in ("navigation", *NAVIGATION_PARTS.values())} == {
        k: v for k, v in real.items() if k not in ("navigation", *NAVIGATION_PARTS.values())
    }


def test_metric_rejected_for_some_stories_costs_only_those(tmp_path: Path) -> None:
    """views refused for about half the stories: every story that accepts it has it; a null views
    is always one Meta refuses for that very story."""
    faults = Faults(rejected_metrics=frozenset({"views"}), reject_share=0.5)
    with make_server(faults=faults) as server:
        report = run(server, tmp_path, IG_MAX_CONCURRENT_ACCOUNTS="1")
        frame = stored(tmp_path).filter(pl.col("insights_status") != "not_enough_viewers")
        refused = frame.filter(pl.col("views").is_null())
        accepted = frame.filter(pl.col("views").is_not_null())
        for story_id in refused["story_id"]:
            answer = httpx.get(
                f"{server.url}/v25.0/{story_id}/insights",
                params={"metric": "views"},
                headers={"Authorization": f"Bearer {SECRET_TOKEN}"},
            )
            assert answer.status_code == 400, story_id
            assert "views metric" in answer.json()["error"]["message"]
    assert report.exit_code == 0
    assert refused.height > 0
    assert accepted.height > refused.height / 3
    assert set(accepted["insights_status"]) == {"ok"}
    assert set(refused["insights_status"]) == {"partial"}
    assert all("rejected by the Graph API: views" in m for m in refused["insights_error"])
    assert assert_exact(server, frame) == accepted.height


def test_not_enough_viewers_on_one_call_keeps_the_others(tmp_path: Path) -> None:
    """(#10) Not enough viewers on the breakdown calls only: the plain values are kept, `partial`,
    naming the withheld calls; a story Meta withholds entirely stays `not_enough_viewers`."""
    with make_server(faults=Faults(withheld_rate=1.0)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0
    frame = stored(tmp_path)
    small = frame.filter(pl.col("insights_status") == "not_enough_viewers")
    assert small.height == below_threshold(server, frame) > 0
    kept = frame.filter(pl.col("insights_status") != "not_enough_viewers")
    assert set(kept["insights_status"]) == {"partial"}
    for row in kept.iter_rows(named=True):
        assert row["views"] == truth(server, row["story_id"])["views"]
        assert row["navigation"] is None
        assert "withheld by Meta (call for navigation)" in row["insights_error"]
        assert "withheld by Meta (call for profile_activity)" in row["insights_error"]


def test_token_revoked_during_insights_keeps_the_values_read(tmp_path: Path) -> None:
    """A token revoked (#190) after 30 calls: the stories read before keep their values, every
    listed story gets its row, and the account fails with what to do."""
    with make_server(faults=Faults(revoke_after=30)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 1
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    npi = next(a for a in report.accounts if a.account == "NPI")
    assert npi.ok is False
    assert npi.error is not None
    assert "token for NPI is invalid or revoked" in npi.error
    assert npi.stored_rows == npi.listed
    rows = frame.filter(pl.col("account") == "NPI")
    assert assert_exact(server, rows) > 0
    failed = rows.filter(pl.col("insights_status") == "error")
    assert failed.height > 0
    assert all("code 190" in m for m in failed["insights_error"])


def test_permission_error_during_insights_keeps_the_values_read(tmp_path: Path) -> None:
    """A #10 that is not "not enough viewers", after some insights calls: values read are kept."""
    seen = {"calls": 0}

    def deny(request: Request, answer: Answer) -> Response:
        seen["calls"] += 1
        if request.params["media"].startswith("1801") and seen["calls"] > 20:
            message = "(#10) Application does not have permission for this action"
            return 403, {}, {"error": {"message": message, "code": 10}}
        return answer()

    with make_server() as server:
        server.simulator.override("insights", deny)
        report = run(server, tmp_path, IG_MAX_CONCURRENT_ACCOUNTS="1")
    npi = next(a for a in report.accounts if a.account == "NPI")
    assert npi.ok is False
    assert npi.error is not None
    assert "lacks a permission" in npi.error
    rows = stored(tmp_path).filter(pl.col("account") == "NPI")
    assert rows.height == npi.listed
    assert assert_exact(server, rows) > 0
    assert (rows["insights_status"] == "error").any()


def test_link_clicks_is_stored(tmp_path: Path) -> None:
    """link_clicks is asked with the plain metrics and stored in its column."""
    with make_server() as server:
        run(server, tmp_path)
    frame = stored(tmp_path).filter(pl.col("insights_status") == "ok")
    assert frame.height > 0
    assert frame["link_clicks"].to_list() == [
        truth(server, s)["link_clicks"] for s in frame["story_id"]
    ]
    assert frame["link_clicks"].sum() > 0


def test_extra_metrics_are_asked_when_opted_in(tmp_path: Path) -> None:
    """IG_EXTRA_METRICS=total_views,facebook_views: both stored where they apply; facebook_views
    of a story not shared to Facebook (#100) is null and named, and costs that story only."""
    with make_server() as server:
        report = run(server, tmp_path, IG_EXTRA_METRICS="total_views,facebook_views")
        frame = stored(tmp_path).filter(pl.col("insights_status") != "not_enough_viewers")
        extra = {s: server.simulator.extra_truth(s, NOW) or {} for s in frame["story_id"]}
    assert report.exit_code == 0
    assert frame["total_views"].to_list() == [extra[s]["total_views"] for s in frame["story_id"]]
    assert frame["facebook_views"].to_list() == [
        extra[s].get("facebook_views") for s in frame["story_id"]
    ]
    shared = frame.filter(pl.col("facebook_views").is_not_null())
    unshared = frame.filter(pl.col("facebook_views").is_null())
    assert shared.height > 0
    assert unshared.height > 0
    assert set(shared["insights_status"]) == {"ok"}
    assert set(unshared["insights_status"]) == {"partial"}
    assert all("facebook_views" in m for m in unshared["insights_error"])


def test_unknown_extra_metric_is_refused_at_start(tmp_path: Path) -> None:
    """IG_EXTRA_METRICS naming an unknown metric: one line, exit 2, nothing captured."""
    accounts = write_accounts(tmp_path / "accounts.toml")
    with make_server() as server:
        env = env_for(server, tmp_path, accounts, IG_EXTRA_METRICS="total_views,impressions")
        result = run_cli(["run", "--all"], env, tmp_path)
        assert server.simulator.stats.http_requests == 0
    assert result.returncode == 2
    assert "IG_EXTRA_METRICS" in result.stderr
    assert "impressions" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.dumps(result.stderr).count("\\n") <= 2


def test_a_count_is_a_whole_number_from_zero_to_the_int64_limit_and_nothing_else() -> None:
    """as_count: what a metric column may hold. A bool (an int to Python), a string of digits, a
    fraction, a negative number and anything past 64 bits are not counts."""
    counts = {0: 0, 7: 7, 2**63 - 1: 2**63 - 1, 12.0: 12}
    for value, expected in counts.items():
        assert as_count(value) == expected, value
    for value in (True, False, -1, 2**63, 2**70, 1.5, float("nan"), float("inf"), "12", None, [1]):
        assert as_count(value) is None, value
