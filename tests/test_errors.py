"""The one classification point, as a table; usage headers and the retry policy."""

from __future__ import annotations

import json
import random

import pytest

from ig_story_metrics.clock import Deadline
from ig_story_metrics.graph import errors as e
from ig_story_metrics.graph.retry import BudgetExhausted, RetryPolicy
from ig_story_metrics.graph.usage import Usage, parse_usage


def err(code: int | None, message: str = "boom", **more: object) -> dict[str, object]:
    body: dict[str, object] = {"message": message, "type": "OAuthException", **more}
    if code is not None:
        body["code"] = code
    return {"error": body}


CASES = [
    # (HTTP status, body, requested metrics, expected class)
    (200, {"data": []}, (), None),
    (200, [{"code": 200}], (), None),
    (200, None, (), e.BadResponse),  # not JSON
    (502, None, (), e.TransientError),  # an HTML error page
    (404, None, (), e.BadResponse),
    (429, None, (), e.ThrottledError),
    (500, err(1, "An unknown error occurred"), (), e.TransientError),
    (503, err(2, "Service temporarily unavailable"), (), e.TransientError),
    (400, err(100, "weird", is_transient=True), (), e.TransientError),
    (400, err(4, "Application request limit reached"), (), e.ThrottledError),
    (400, err(17, "(#17) User request limit reached", error_subcode=2446079), (), e.ThrottledError),
    (400, err(32, "(#32) Page request limit reached"), (), e.ThrottledError),
    (400, err(613, "Calls to this api have exceeded the rate limit"), (), e.ThrottledError),
    (400, err(80002, "(#80002) There have been too many calls"), (), e.ThrottledError),
    (429, err(100, "throttled in disguise"), (), e.ThrottledError),
    (
        400,
        err(10, "(#10) Not enough viewers for the media to show insights"),
        (),
        e.NotEnoughViewers,
    ),
    (
        403,
        err(10, "(#10) Application does not have permission for this action"),
        (),
        e.AccountFatal,
    ),
    (400, err(190, "Error validating access token", error_subcode=463), (), e.AccountFatal),
    (400, err(190, "Invalid OAuth access token"), (), e.AccountFatal),
    (400, err(102, "Session key invalid"), (), e.AccountFatal),
    (400, err(200, "(#200) Permissions error"), (), e.AccountFatal),
    (400, err(3, "Application does not have the capability"), (), e.AccountFatal),
    (400, err(100, "Unsupported get request.", error_subcode=33), (), e.UnsupportedRequest),
    (
        400,
        err(100, "(#100) The Media Insights API does not support the views metric for this media"),
        ("views", "reach"),
        e.MetricRejected,
    ),
    (400, err(100, "(#100) Invalid parameter"), (), e.RequestBug),
    (400, err(None, "no code at all"), (), e.RequestBug),
    (400, {"error": "a string, not an object"}, (), e.BadResponse),
]


@pytest.mark.parametrize(("status", "body", "requested", "expected"), CASES)
def test_classification_table(
    status: int, body: object, requested: tuple[str, ...], expected: type[e.GraphError] | None
) -> None:
    """Each (status, body) row maps to exactly the action class the caller must take."""
    result = e.classify(status, body, requested_metrics=requested)
    if expected is None:
        assert result is None
    else:
        assert type(result) is expected


@pytest.mark.parametrize(
    ("message", "requested", "named"),
    [
        (
            "(#100) The Media Insights API does not support the impressions, replies metric",
            ("impressions", "replies", "reach"),
            ("impressions", "replies"),
        ),
        (
            "(#100) metric[1] must be one of the following values: reach, views",
            ("reach", "nope"),
            ("nope",),
        ),
        ("(#100) The value must be a valid insights metric", ("reach", "views"), ()),
        (
            "Starting from version v22.0 and above, the impressions metric is no longer supported",
            ("impressions",),
            ("impressions",),
        ),
    ],
)
def test_rejected_metric_names(
    message: str, requested: tuple[str, ...], named: tuple[str, ...]
) -> None:
    """The metrics a #100 message blames are found; none when it does not name them."""
    assert e.rejected_metrics(message, requested) == named


def test_error_fields_are_kept_and_tokens_redacted() -> None:
    """Code, subcode and fbtrace id are kept; a token in the message is masked."""
    body = err(
        190,
        "bad https://x/?access_token=EAAsecret&a=1 Bearer EAAother",
        error_subcode=460,
        fbtrace_id="Abc",
    )
    result = e.classify(400, body)
    assert result is not None
    assert (result.code, result.subcode, result.fbtrace_id) == (190, 460, "Abc")
    assert "EAAsecret" not in result.describe()
    assert "EAAother" not in result.describe()


def test_usage_headers_take_the_worst_of_every_key_and_entry() -> None:
    """Every BUC key and array entry and X-App-Usage are read; the largest figure wins."""
    buc = {
        "1784": [{"type": "instagram", "call_count": 12, "estimated_time_to_regain_access": 0}],
        "999": [
            {"type": "instagram", "call_count": 40, "total_time": 91},
            {"type": "pages", "estimated_time_to_regain_access": 3},
        ],
    }
    usage = parse_usage(
        [("X-Business-Use-Case-Usage", json.dumps(buc)), ("x-app-usage", '{"call_count": 95}')]
    )
    assert usage == Usage(percent=95.0, regain_seconds=180.0)
    assert parse_usage({"x-app-usage": "not json", "X-Business-Use-Case-Usage": "[1]"}) == Usage()


def test_policy_backoff_grows_with_jitter_and_is_capped() -> None:
    """Backoff doubles per attempt, stays within [half, full] of its ceiling, never above the cap."""
    policy = RetryPolicy(base_seconds=1, max_seconds=8, rng=random.Random(1))
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


class _Ceiling(random.Random):
    """Jitter at its top: every backoff is exactly its ceiling, so a table can state the wait."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _throttled(retry_after: float | None) -> e.ThrottledError:
    error = e.ThrottledError("(#80002) too many calls", code=80002)
    error.retry_after = retry_after
    return error


TRANSIENT = e.TransientError("An unknown error occurred", code=1)
FATAL = e.AccountFatal("Invalid OAuth access token", code=190)
BUG = e.RequestBug("(#100) Invalid parameter", code=100)
REJECTED = e.MetricRejected("(#100) The Media Insights API does not support views", code=100)
FEW = e.NotEnoughViewers("(#10) Not enough viewers for the media to show insights", code=10)
DECISIONS = [
    # (error, attempt, seconds left, scale, expected wait, or the final error's class and text)
    (TRANSIENT, 1, 100, 1, 1.0, None),
    (TRANSIENT, 3, 100, 1, 4.0, None),
    (TRANSIENT, 5, 100, 1, 8.0, None),  # capped at max_seconds
    (e.BadResponse("an HTML page"), 2, 100, 1, 2.0, None),
    (
        e.UnsupportedRequest("(#100) Unsupported get request", code=100, subcode=33),
        2,
        100,
        1,
        2.0,
        None,
    ),
    (_throttled(120), 1, 300, 1, 120.0, None),  # the regain time Meta announced
    (_throttled(None), 2, 100, 1, 2.0, None),  # none announced: backoff
    (TRANSIENT, 6, 100, 1, None, (e.TransientError, "gave up after 6 attempts")),
    (TRANSIENT, 3, 3.5, 1, None, (BudgetExhausted, "a 4.0s wait does not fit in the 3.5s")),
    (_throttled(120), 1, 60, 1, None, (BudgetExhausted, "a 120.0s wait does not fit")),
    (FATAL, 1, 100, 1, None, (e.AccountFatal, FATAL.message)),
    (BUG, 1, 100, 1, None, (e.RequestBug, BUG.message)),
    (REJECTED, 1, 100, 1, None, (e.MetricRejected, REJECTED.message)),
    (FEW, 1, 100, 1, None, (e.NotEnoughViewers, FEW.message)),
    # scale: the same decisions, every wait scaled (tests retry instantly this way)
    (TRANSIENT, 3, 100, 0.001, 0.004, None),
    (_throttled(120), 1, 1, 0.001, 0.12, None),  # fits once scaled
    (TRANSIENT, 6, 100, 0.001, None, (e.TransientError, "gave up after 6 attempts")),
]


@pytest.mark.parametrize(("error", "attempt", "left", "scale", "wait", "final"), DECISIONS)
def test_decision_table(
    error: e.GraphError,
    attempt: int,
    left: float,
    scale: float,
    wait: float | None,
    final: tuple[type[e.GraphError], str] | None,
) -> None:
    """decide(error, attempt, deadline): retry after exactly the expected wait, or stop with the
    expected final error."""
    policy = RetryPolicy(max_attempts=6, base_seconds=1, max_seconds=8, scale=scale, rng=_Ceiling())
    decision = policy.decide(error, attempt, Deadline(left, clock=lambda: 0.0))
    if final is None:
        assert decision.retry
        assert decision.after == pytest.approx(wait)
    else:
        assert not decision.retry
        assert type(decision.error) is final[0]
        assert final[1] in str(decision.error)


def test_an_expired_deadline_allows_no_further_attempt() -> None:
    """Once the budget is spent, even a zero wait is refused: the run must stop asking."""
    now = [0.0]
    deadline = Deadline(5, clock=lambda: now[0])
    now[0] = 6.0
    decision = RetryPolicy(base_seconds=0.0).decide(TRANSIENT, 1, deadline)
    assert not decision.retry
    assert isinstance(decision.error, BudgetExhausted)


def test_usage_pause_slows_down_before_the_wall() -> None:
    """No pause below the threshold; a growing pause above it; the regain time when announced."""
    policy = RetryPolicy(base_seconds=1, max_seconds=60, pause_percent=80)
    assert policy.usage_pause(Usage(79, 0)) == 0
    assert 1 <= policy.usage_pause(Usage(90, 0)) < policy.usage_pause(Usage(100, 0)) == 60
    assert policy.usage_pause(Usage(10, 120)) == 120


def test_deadline_counts_down() -> None:
    """A deadline allows a wait only while the wait fits in what is left."""
    now = [100.0]
    deadline = Deadline(10, clock=lambda: now[0])
    assert deadline.allows(9)
    now[0] = 108
    assert not deadline.allows(5)
    assert deadline.remaining() == 2
