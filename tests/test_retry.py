"""`RetryPolicy.decide()`, the one place that says "again, and after how long", as a table."""

from __future__ import annotations

import random

import pytest

from ig_story_metrics.clock import Deadline
from ig_story_metrics.graph.errors import (
    AccountFatal,
    BadResponse,
    GraphError,
    MetricRejected,
    NotEnoughViewers,
    RequestBug,
    ThrottledError,
    TransientError,
    UnsupportedRequest,
)
from ig_story_metrics.graph.retry import BudgetExhausted, RetryPolicy


def throttled(after: float | None) -> ThrottledError:
    error = ThrottledError("(#80002) too many calls", code=80002)
    error.retry_after = after
    return error


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# (error, attempt, budget seconds, expected: retry?, expected wait, expected final error type)
# Backoff with base 2 s: attempt n waits within [2^n / 2, 2^n] before scaling; rng is seeded so
# the jittered wait of each row is exact.
ROWS = [
    (TransientError("code 2", code=2), 1, 60, True, (1.0, 2.0), None),
    (TransientError("code 2", code=2), 3, 60, True, (4.0, 8.0), None),
    (BadResponse("html page"), 2, 60, True, (2.0, 4.0), None),
    (TransientError("code 1", code=1), 5, 60, False, None, TransientError),  # attempts used up
    (throttled(30.0), 1, 60, True, (30.0, 30.0), None),  # Meta's announced regain time
    (throttled(None), 1, 60, True, (1.0, 2.0), None),  # nothing announced: back off
    (throttled(90.0), 1, 60, False, None, BudgetExhausted),  # announced wait beyond the budget
    (TransientError("code 2", code=2), 4, 3, False, None, BudgetExhausted),  # backoff > budget
    (AccountFatal("(#190) expired", code=190), 1, 60, False, None, AccountFatal),
    (RequestBug("(#100) bad field", code=100), 1, 60, False, None, RequestBug),
    (MetricRejected("(#100) metric", code=100), 1, 60, False, None, MetricRejected),
    (NotEnoughViewers("(#10) Not enough viewers", code=10), 1, 60, False, None, NotEnoughViewers),
    (
        UnsupportedRequest("(#100) Unsupported get request", code=100, subcode=33),
        2,
        60,
        True,
        (2.0, 4.0),
        None,
    ),
]


@pytest.mark.parametrize(("error", "attempt", "budget", "retry", "wait", "final"), ROWS)
def test_decide_table(
    error: GraphError,
    attempt: int,
    budget: float,
    retry: bool,
    wait: tuple[float, float] | None,
    final: type[GraphError] | None,
) -> None:
    """Each (error, attempt, budget) row gets its decision and wait (or its final error)."""
    policy = RetryPolicy(max_attempts=5, base_seconds=2, max_seconds=60, rng=random.Random(7))
    decision = policy.decide(error, attempt, Deadline(budget, Clock()))
    assert decision.retry is retry
    if wait is not None:
        low, high = wait
        assert low <= decision.after <= high
        assert decision.error is None
    else:
        assert final is not None
        assert type(decision.error) is final
        assert decision.after == 0


def test_giving_up_says_how_many_attempts_and_keeps_the_codes() -> None:
    """The final error after the last attempt names the attempts and keeps code and trace id."""
    policy = RetryPolicy(max_attempts=3)
    error = TransientError("boom", code=2, http_status=500, fbtrace_id="AbC")
    decision = policy.decide(error, 3, Deadline(60, Clock()))
    assert decision.error is not None
    assert decision.error.message == "gave up after 3 attempts: boom"
    assert (decision.error.code, decision.error.http_status, decision.error.fbtrace_id) == (
        2,
        500,
        "AbC",
    )


def test_scale_makes_every_wait_instant_but_keeps_the_decisions() -> None:
    """A tiny scale (tests) shrinks waits in proportion; the decision itself does not change."""
    real = RetryPolicy(base_seconds=2, rng=random.Random(3))
    fast = RetryPolicy(base_seconds=2, scale=0.001, rng=random.Random(3))
    deadline = Deadline(60, Clock())
    error = TransientError("code 2", code=2)
    slow_decision, fast_decision = real.decide(error, 2, deadline), fast.decide(error, 2, deadline)
    assert slow_decision.retry
    assert fast_decision.retry
    assert fast_decision.after == pytest.approx(slow_decision.after * 0.001)
    assert fast.decide(throttled(30), 1, deadline).after == pytest.approx(0.03)


def test_an_expired_deadline_allows_no_further_attempt() -> None:
    """Once the budget is spent, even a zero wait is refused: the run must stop asking."""
    clock = Clock()
    deadline = Deadline(5, clock)
    clock.now += 6
    policy = RetryPolicy(base_seconds=0.0)
    decision = policy.decide(TransientError("code 2", code=2), 1, deadline)
    assert not decision.retry
    assert isinstance(decision.error, BudgetExhausted)
