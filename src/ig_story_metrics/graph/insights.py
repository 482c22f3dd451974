"""A story's insights: the three calls per story, sent as Graph batches of at most 50 operations.

`fetch_insights()` works in rounds: a round sends every pending call in batches; what comes back
transient or throttled is pending again after the wait `RetryPolicy.decide()` gives (the longest of
the round), a rejected metric is dropped from its call, and a call whose metric Meta did not name is
split into one call per metric to find it. Account-fatal errors raise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from ig_story_metrics.graph.client import MAX_BATCH, Exchange, GraphClient, Session
from ig_story_metrics.graph.errors import (
    AccountFatal,
    BadResponse,
    GraphError,
    MetricRejected,
    StorySkipped,
    ThrottledError,
    TransientError,
    classify,
)
from ig_story_metrics.graph.retry import BudgetExhausted
from ig_story_metrics.graph.usage import parse_usage
from ig_story_metrics.model.metrics import for_login, metric_requests


@dataclass(frozen=True, slots=True)
class InsightsCall:
    """One insights request for one story."""

    story_id: str
    metrics: tuple[str, ...]
    breakdown: str | None = None

    def relative_url(self) -> str:
        params = {"metric": ",".join(self.metrics)}
        if self.breakdown:
            params["breakdown"] = self.breakdown
        return f"{self.story_id}/insights?{urlencode(params, safe=',')}"


@dataclass(slots=True)
class CallResult:
    """What one insights call finally came back with: a payload, or the error to report.

    `rejected` names the metrics Meta refused, which were dropped from the call.
    """

    call: InsightsCall
    payload: object = None
    error: GraphError | None = None
    rejected: tuple[str, ...] = ()


Pending = tuple[InsightsCall, tuple[str, ...]]


async def fetch_insights(
    client: GraphClient, session: Session, story_ids: Sequence[str]
) -> dict[str, list[CallResult]]:
    """The insights calls of every story, in rounds of batches, each call's final result."""
    results: dict[str, list[CallResult]] = {story_id: [] for story_id in story_ids}
    pending: list[Pending] = [
        (InsightsCall(story_id, metrics, breakdown), ())
        for story_id in story_ids
        for metrics, breakdown in for_login(metric_requests(), client.login)
    ]
    attempts: dict[InsightsCall, int] = {}
    while pending:
        again: list[Pending] = []
        delay, last_error = 0.0, None
        for batch in _chunks(pending, MAX_BATCH):
            # filtered per batch: a metric refused in the previous batch is not asked again
            chunk = list(_without_rejected(client.rejected_metrics, batch, results))
            if not chunk:
                continue
            answers = await _batch_or_fail(client, session, chunk)
            for (call, rejected), answer in zip(chunk, answers, strict=True):
                outcome = _settle(client, session, call, rejected, answer, attempts)
                if isinstance(outcome, CallResult):
                    results[call.story_id].append(outcome)
                    continue
                again.extend(outcome)
                if isinstance(outcome, _Retry):
                    last_error = outcome.error
                    delay = max(delay, outcome.after)
                    client.pause_for(session, outcome.error, outcome.after)
        pending = again
        if pending and delay > 0:
            try:
                await client.wait(session, delay, last_error)
            except BudgetExhausted as exc:
                for call, rejected in pending:
                    results[call.story_id].append(CallResult(call, error=exc, rejected=rejected))
                pending = []
    return results


class _Retry(list[Pending]):
    """The calls to send again after `after` seconds, because of `error`."""

    def __init__(self, items: Sequence[Pending], error: GraphError, after: float) -> None:
        super().__init__(items)
        self.error = error
        self.after = after


def _without_rejected(
    rejected_run_wide: set[str],
    pending: Sequence[Pending],
    results: dict[str, list[CallResult]],
) -> Iterator[Pending]:
    """Pending calls minus the metrics already refused this run (a call left empty is done)."""
    for call, rejected in pending:
        dropped = tuple(m for m in call.metrics if m in rejected_run_wide)
        if not dropped:
            yield call, rejected
            continue
        kept = tuple(m for m in call.metrics if m not in rejected_run_wide)
        all_rejected = tuple(dict.fromkeys((*rejected, *dropped)))
        if kept:
            yield replace(call, metrics=kept), all_rejected
        else:
            results[call.story_id].append(CallResult(call, rejected=all_rejected))


async def _batch_or_fail(
    client: GraphClient, session: Session, chunk: Sequence[Pending]
) -> list[CallResult]:
    """Classified answers of one batch; if the batch itself keeps failing, every call fails."""
    try:
        answers = await client.batch(session, [call.relative_url() for call, _ in chunk])
    except (TransientError, ThrottledError) as exc:
        return [CallResult(call, error=exc, rejected=rej) for call, rej in chunk]
    return [_call_result(call, answer) for (call, _), answer in zip(chunk, answers, strict=True)]


def _settle(
    client: GraphClient,
    session: Session,
    call: InsightsCall,
    rejected: tuple[str, ...],
    answer: CallResult,
    attempts: dict[InsightsCall, int],
) -> CallResult | list[Pending]:
    """A final result for the call, or the calls to send next round."""
    error = answer.error
    if error is None or isinstance(error, StorySkipped):
        return CallResult(call, answer.payload, error, rejected)
    if isinstance(error, AccountFatal):
        raise error
    if isinstance(error, MetricRejected):
        named = tuple(m for m in error.metrics if m in call.metrics)
        if not named and len(call.metrics) > 1:  # Meta did not say which: ask one by one
            return [(replace(call, metrics=(m,)), rejected) for m in call.metrics]
        dropped = named or call.metrics
        client.rejected_metrics.update(dropped)
        kept = tuple(m for m in call.metrics if m not in dropped)
        all_rejected = (*rejected, *dropped)
        if not kept:
            return CallResult(call, rejected=all_rejected)
        return [(replace(call, metrics=kept), all_rejected)]
    attempts[call] = attempts.get(call, 0) + 1
    decision = client.policy.decide(error, attempts[call], client.deadline)
    if decision.retry:
        session.counters.retries += 1
        return _Retry([(call, rejected)], error, decision.after)
    return CallResult(call, error=decision.error or error, rejected=rejected)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _call_result(call: InsightsCall, answer: Exchange) -> CallResult:
    if answer.status is None:
        return CallResult(call, error=TransientError("batch operation did not finish (null slot)"))
    usage = parse_usage(answer.headers)
    error = classify(
        answer.status,
        answer.body,
        requested_metrics=call.metrics,
        retry_after=usage.regain_seconds or None,
    )
    if error is None and not isinstance(answer.body, dict):
        error = BadResponse("insights answer is not a JSON object", http_status=answer.status)
    return CallResult(call, payload=None if error else answer.body, error=error)
