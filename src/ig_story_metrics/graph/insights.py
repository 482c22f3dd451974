"""A story's insights: the three calls per story, sent as Graph batches of at most 50 operations.

`fetch_insights()` works in rounds: a round sends every pending call in batches; what comes back
transient or throttled is pending again after the wait `RetryPolicy.decide()` gives (the longest of
the round). 100/33 on a live story is retried the same way (it may be a throttle in disguise).

- A metric Meta refuses for a story is dropped from that story's call, and only that story's: a
  call whose metric Meta did not name is split into one call per metric to find it. When one
  batch shows a metric refused by every story that asked for it, the account stops asking for it
  for the rest of the run (`Session.dropped_metrics`); the calls it leaves out say so.
- An account-fatal error (190, a permission #10) stops the account's calls, but keeps every answer
  already read: the calls left are settled with that error and `Insights.fatal` carries it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
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
    UnsupportedRequest,
    classify,
)
from ig_story_metrics.graph.retry import BudgetExhausted
from ig_story_metrics.graph.usage import parse_usage
from ig_story_metrics.model.metrics import for_login


@dataclass(frozen=True, slots=True)
class InsightsCall:
    """One insights request for one story."""

    story_id: str
    metrics: tuple[str, ...]
    breakdown: str | None = None

    def relative_url(self) -> str:
        return f"{self.story_id}/insights?{_query(self.metrics, self.breakdown)}"

    @property
    def label(self) -> str:
        """How a message names the call: `call for navigation`, `call for views,reach,...`."""
        return "call for " + ",".join(self.metrics)


@functools.lru_cache(maxsize=256)
def _query(metrics: tuple[str, ...], breakdown: str | None) -> str:
    """The query of an insights call (the same few for every story: built once)."""
    params = {"metric": ",".join(metrics)}
    if breakdown:
        params["breakdown"] = breakdown
    return urlencode(params, safe=",")


@dataclass(slots=True)
class CallResult:
    """What one insights call finally came back with: a payload, or the error to report.

    `rejected` names the metrics Meta refused for this story (dropped from the call); `not_asked`
    the metrics the account had stopped asking for (`Session.dropped_metrics`).
    """

    call: InsightsCall
    payload: object = None
    error: GraphError | None = None
    rejected: tuple[str, ...] = ()
    not_asked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Pending:
    call: InsightsCall
    rejected: tuple[str, ...] = ()
    not_asked: tuple[str, ...] = ()

    def result(self, payload: object = None, error: GraphError | None = None) -> CallResult:
        return CallResult(self.call, payload, error, self.rejected, self.not_asked)


@dataclass(slots=True)
class Insights:
    """Every call's final result by story, and the account-fatal error that stopped them, if any."""

    results: dict[str, list[CallResult]]
    fatal: GraphError | None = None

    def refused_metrics(self) -> list[str]:
        """The metrics refused for some story, or no longer asked by the account."""
        return sorted(
            {
                m
                for calls in self.results.values()
                for r in calls
                for m in (*r.rejected, *r.not_asked)
            }
        )


def _never(_: str) -> bool:
    return False


@dataclass(slots=True)
class _Round:
    again: list[_Pending] = field(default_factory=list)
    delay: float = 0.0
    last_error: GraphError | None = None


async def fetch_insights(
    client: GraphClient,
    session: Session,
    story_ids: Sequence[str],
    *,
    lapsed: Callable[[str], bool] = _never,
) -> Insights:
    """The insights calls of every story, in rounds of batches, each call's final result.

    `lapsed(story_id)` says a story is past its expiry: a 100/33 for it is final at once.
    """
    insights = Insights({story_id: [] for story_id in story_ids})
    pending = [
        _Pending(InsightsCall(story_id, metrics, breakdown))
        for story_id in story_ids
        for metrics, breakdown in for_login(client.metric_requests, client.login)
    ]
    attempts: dict[InsightsCall, int] = {}
    while pending:
        state = _Round()
        chunks = _chunks(pending, MAX_BATCH)
        # Past two batches, the first goes alone: what it teaches about refused metrics spares
        # the others. Up to two, all go at once: a refusal would spare at most one batch of
        # operations, and waiting for the first costs every run a round trip. All are packed
        # with other accounts' operations of the same token.
        if len(chunks) > 2:
            first, *chunks = chunks
            await _send_chunk(client, session, first, insights, attempts, lapsed, state)
        await asyncio.gather(
            *(_send_chunk(client, session, c, insights, attempts, lapsed, state) for c in chunks)
        )
        pending = state.again
        if insights.fatal is not None:
            _settle_all(insights, pending, insights.fatal)
            pending = []
        if pending and state.delay > 0:
            try:
                await client.wait(session, state.delay, state.last_error)
            except BudgetExhausted as exc:
                _settle_all(insights, pending, exc)
                pending = []
    return insights


async def _send_chunk(
    client: GraphClient,
    session: Session,
    batch: Sequence[_Pending],
    insights: Insights,
    attempts: dict[InsightsCall, int],
    lapsed: Callable[[str], bool],
    state: _Round,
) -> None:
    """Send what is left of one chunk of pending calls (settled at once after a fatal error)."""
    if insights.fatal is not None:
        _settle_all(insights, batch, insights.fatal)
        return
    chunk = list(_without_dropped(session, batch, insights.results))
    if chunk:
        await _send_batch(client, session, chunk, insights, attempts, lapsed, state)


async def _send_batch(
    client: GraphClient,
    session: Session,
    chunk: Sequence[_Pending],
    insights: Insights,
    attempts: dict[InsightsCall, int],
    lapsed: Callable[[str], bool],
    state: _Round,
) -> None:
    """Send one batch and settle each of its calls (or plan it for the next round)."""
    answers = await _batch_or_fail(client, session, chunk)
    _learn_refusals(session, chunk, answers)
    for pending, answer in zip(chunk, answers, strict=True):
        outcome = _settle(client, session, pending, answer.error, attempts, lapsed)
        if outcome is None:
            insights.results[pending.call.story_id].append(pending.result(answer.payload))
        elif isinstance(outcome, CallResult):
            insights.results[pending.call.story_id].append(outcome)
            if isinstance(outcome.error, AccountFatal) and insights.fatal is None:
                insights.fatal = outcome.error
        elif isinstance(outcome, _Retry):
            state.again.extend(outcome)
            state.last_error = outcome.error
            state.delay = max(state.delay, outcome.after)
            client.pause_for(session, outcome.error, outcome.after)
        else:
            state.again.extend(outcome)


class _Retry(list[_Pending]):
    """The calls to send again after `after` seconds, because of `error`."""

    def __init__(self, items: Sequence[_Pending], error: GraphError, after: float) -> None:
        super().__init__(items)
        self.error = error
        self.after = after


def _settle_all(insights: Insights, pending: Sequence[_Pending], error: GraphError) -> None:
    for item in pending:
        insights.results[item.call.story_id].append(item.result(error=error))


def _without_dropped(
    session: Session, pending: Sequence[_Pending], results: dict[str, list[CallResult]]
) -> Iterator[_Pending]:
    """Pending calls minus the metrics this account stopped asking for (a call left empty is done)."""
    for item in pending:
        dropped = tuple(m for m in item.call.metrics if m in session.dropped_metrics)
        if not dropped:
            yield item
            continue
        kept = tuple(m for m in item.call.metrics if m not in session.dropped_metrics)
        narrowed = _Pending(
            replace(item.call, metrics=kept), item.rejected, (*item.not_asked, *dropped)
        )
        if kept:
            yield narrowed
        else:
            results[item.call.story_id].append(narrowed.result())


def _refused(call: InsightsCall, error: GraphError | None) -> tuple[str, ...]:
    """The metrics of `call` that `error` refuses (all of a one-metric call when unnamed)."""
    if not isinstance(error, MetricRejected):
        return ()
    named = tuple(m for m in error.metrics if m in call.metrics)
    return named or (call.metrics if len(call.metrics) == 1 else ())


def _learn_refusals(session: Session, chunk: Sequence[_Pending], answers: Sequence[Answer]) -> None:
    """A metric refused by every story of this batch that asked for it: the account stops asking.
    Who asked for what is gathered only when something was refused (a fleet's 61,000 calls an
    hour are rarely refused)."""
    refused: dict[str, set[str]] = {}
    for item, answer in zip(chunk, answers, strict=True):
        for metric in _refused(item.call, answer.error):
            refused.setdefault(metric, set()).add(item.call.story_id)
    if not refused:
        return
    asked: dict[str, set[str]] = {}
    for item in chunk:
        for metric in item.call.metrics:
            asked.setdefault(metric, set()).add(item.call.story_id)
    for metric, stories in refused.items():
        if stories == asked[metric] and metric not in session.dropped_metrics:
            session.dropped_metrics[metric] = (
                f"refused by the Graph API for every story of a batch ({len(stories)} "
                "stories), so not asked again for this account in this run"
            )


def _settle(
    client: GraphClient,
    session: Session,
    pending: _Pending,
    error: GraphError | None,
    attempts: dict[InsightsCall, int],
    lapsed: Callable[[str], bool],
) -> CallResult | list[_Pending] | None:
    """None when the call answered; else its final result, or the calls to send next round."""
    call = pending.call
    if error is None:
        return None
    if isinstance(error, StorySkipped | AccountFatal):
        return pending.result(error=error)
    if isinstance(error, MetricRejected):
        dropped = _refused(call, error)
        if not dropped:  # Meta did not say which: ask one by one
            return [replace(pending, call=replace(call, metrics=(m,))) for m in call.metrics]
        kept = tuple(m for m in call.metrics if m not in dropped)
        narrowed = replace(pending, rejected=(*pending.rejected, *dropped))
        if not kept:
            return narrowed.result()
        return [replace(narrowed, call=replace(call, metrics=kept))]
    if isinstance(error, UnsupportedRequest) and lapsed(call.story_id):
        return pending.result(error=error)  # past its expiry: it is gone, not throttled
    attempts[call] = attempts.get(call, 0) + 1
    decision = client.policy.decide(error, attempts[call], client.deadline)
    if decision.retry:
        session.counters.retries += 1
        return _Retry([pending], error, decision.after)
    return pending.result(error=decision.error or error)


@dataclass(frozen=True, slots=True)
class Answer:
    """One operation's answer: the payload, or the error it was classified as."""

    payload: object = None
    error: GraphError | None = None


async def _batch_or_fail(
    client: GraphClient, session: Session, chunk: Sequence[_Pending]
) -> list[Answer]:
    """Classified answers of one batch; if the batch itself keeps failing, every call fails."""
    try:
        urls = [item.call.relative_url() for item in chunk]
        answers = await client.batch(session, urls, pack=True)
    except GraphError as exc:  # transient or throttled to the end, or account-fatal
        return [Answer(error=exc) for _ in chunk]
    return [_answer(item.call, answer) for item, answer in zip(chunk, answers, strict=True)]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _answer(call: InsightsCall, answer: Exchange) -> Answer:
    if answer.error is not None:
        return Answer(error=answer.error)
    error = classify(answer.status or 0, answer.body, requested_metrics=call.metrics)
    if isinstance(error, ThrottledError):  # only then do the operation's usage headers matter
        error.retry_after = parse_usage(answer.headers).regain_seconds or None
    if error is None and not isinstance(answer.body, dict):
        error = BadResponse("insights answer is not a JSON object", http_status=answer.status)
    return Answer(payload=None if error else answer.body, error=error)
