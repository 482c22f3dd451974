"""No lost hour (issue "Truthful values and no lost hour", items 10 and 11): a batch refused as a
whole falls back to plain GETs, and a story that was listed always gets exactly one row per run,
over a real socket against the simulator."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ig_story_metrics.simulator import Answer, Faults, Request, Response, SimulatorServer

from .conftest import NOW, assert_exact, live_count, make_server, run, stored


def truth(server: SimulatorServer, story_id: str) -> dict[str, int]:
    values = server.simulator.truth(story_id, NOW)
    assert values is not None
    return values


def test_batch_refused_as_a_whole_falls_back_to_plain_gets(tmp_path: Path) -> None:
    """Every batch POST refused (#12, a deprecated feature): plain GETs capture every story."""
    with make_server(faults=Faults(refuse_batches=True)) as server:
        report = run(server, tmp_path)
        stats = server.simulator.stats
    assert report.exit_code == 0, report.to_json()
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    below = sum(truth(server, s)["reach"] < 5 for s in frame["story_id"])
    assert assert_exact(server, frame) == frame.height - below
    assert stats.batches == 0
    # per story three GETs, per account its listing; refused POSTs: at most one per account
    # (those in flight before the first refusal), none after
    assert stats.by_route["insights"] == 3 * live_count(server)
    refused_posts = stats.http_requests - stats.by_route["insights"] - stats.by_route["stories"]
    assert 1 <= refused_posts <= 5
    assert stats.tokens_in_urls == 0  # the token travels in the header
    warned = [w for a in report.accounts for w in a.warnings if "refused batch requests" in w]
    assert warned
    assert "(#12)" in warned[0]


def test_a_later_listing_page_failing_keeps_the_pages_read(tmp_path: Path) -> None:
    """Page 2 of the listing fails: the stories of page 1 are captured and stored, and the
    account reports why its listing stopped (exit 1)."""
    with make_server(page_size=3, faults=Faults(broken_page=2)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 1
    npi = next(a for a in report.accounts if a.account == "NPI")
    assert npi.ok is False
    assert npi.error is not None
    assert "listing stopped after 1 page(s)" in npi.error
    assert npi.listed == npi.stored_rows == 3
    frame = stored(tmp_path).filter(pl.col("account") == "NPI")
    first_page = [s.id for s in server.simulator.world.live_stories("NPI")[:3]]
    assert sorted(frame["story_id"]) == sorted(first_page)


def test_story_without_a_valid_timestamp_gets_an_error_row(tmp_path: Path) -> None:
    """Null, garbage and year-9999 timestamps: the story still gets its row, status `error`,
    posted_at null, the reason named, and the values Meta gave kept."""
    with make_server(faults=Faults(seed=1, bad_timestamp_rate=0.4)) as server:
        report = run(server, tmp_path)
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    odd = frame.filter(pl.col("posted_at").is_null())
    assert odd.height > 0
    assert set(odd["insights_status"]) == {"error"}
    assert odd["expires_at"].null_count() == odd["story_age_hours"].null_count() == odd.height
    messages = " ".join(odd["insights_error"])
    for shown in ("(None)", "'not a date'", "'9999-12-31T23:59:59+0000'", "(1732460400)"):
        assert shown in messages
    with_values = odd.filter(pl.col("reach").is_not_null())
    assert with_values.height > 0
    for row in with_values.iter_rows(named=True):
        assert row["reach"] == truth(server, row["story_id"])["reach"]
    assert all(a.stored_rows == a.listed for a in report.accounts)


def test_story_listed_on_two_pages_gets_one_row(tmp_path: Path) -> None:
    """Every page repeats the previous page's last story: one row per story."""
    with make_server(page_size=3, faults=Faults(duplicate_rate=1.0)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    assert frame["story_id"].n_unique() == frame.height


def test_insights_failing_wholesale_still_give_one_row_per_story(tmp_path: Path) -> None:
    """The token dies between the listing and the insights (every batch after the listings'
    answers #190): every listed story gets a row with status `error`, and the account fails with
    what to do."""

    def dead_token(request: Request, answer: Answer) -> Response:
        if "/stories" in request.form.get("batch", ""):  # the listings: the token still lives
            return answer()
        message = "Error validating access token: Session has expired on Tuesday, 24-Nov-26."
        return 400, {}, {"error": {"message": message, "code": 190, "error_subcode": 463}}

    with make_server() as server:
        server.simulator.override("batch", dead_token)
        report = run(server, tmp_path)
    assert report.exit_code == 1
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    assert set(frame["insights_status"]) == {"error"}
    assert all("code 190/463" in m for m in frame["insights_error"])
    assert all(a.error and "expired" in a.error for a in report.accounts)
    assert all(a.stored_rows == a.listed for a in report.accounts)


def test_lone_surrogate_caption_is_stored(tmp_path: Path) -> None:
    """A caption holding half an emoji is stored with U+FFFD in its place; the run succeeds."""
    with make_server(faults=Faults(odd_caption_rate=1.0)) as server:
        report = run(server, tmp_path)
    assert report.exit_code == 0
    frame = stored(tmp_path)
    assert frame.height == live_count(server)
    assert set(frame["caption"]) == {"Flash sale \ufffd"}
