"""The async Graph API client: the only code that speaks HTTP to Meta.

- `list_stories()` follows `paging.next` to the end (tokens stripped from the links Meta returns).
- `fetch_insights()` asks the three insights calls of every story as Graph batch requests of at most
  50 operations, so an account with 16 stories costs one listing and one batch when all goes well.
- The token travels in the `Authorization` header (GET) or the POST body (batch), never in a URL.
- Every answer goes through `errors.classify()`; then the caller's action follows from the class:
  transient errors are retried with backoff, throttling waits for the announced regain time, a metric
  Meta rejects is dropped (and not asked again this run), skip-story errors are final for the story,
  account-fatal errors stop the account. All waiting is bounded by the run's `Deadline`.
- Usage headers pace each account: when any percentage reaches the policy's threshold, that account
  pauses before its next call instead of hammering into the limit.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from ig_story_metrics.graph.errors import (
    AccountFatal,
    BadResponse,
    GraphError,
    MetricRejected,
    StoryExpired,
    StorySkipped,
    ThrottledError,
    TransientError,
    classify,
    parse_json,
    redact,
)
from ig_story_metrics.graph.throttle import Deadline, RetryPolicy, Usage, parse_usage
from ig_story_metrics.records import Story, metric_requests, parse_timestamp

MAX_BATCH = 50
PAGE_LIMIT = 50
MAX_PAGES = 100
STORY_FIELDS = "id,media_type,media_product_type,permalink,caption,timestamp"
_SECRET_PARAMS = frozenset({"access_token", "appsecret_proof"})


def strip_secrets(url: str) -> str:
    """`path?query` of a URL with token-bearing parameters removed (Meta puts them in paging.next)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = urlencode([(k, v) for k, v in query if k.lower() not in _SECRET_PARAMS])
    return parts.path + (f"?{kept}" if kept else "")


class BudgetExhausted(TransientError):
    """The run's time budget does not allow another wait or attempt."""


@dataclass(slots=True)
class Session:
    """One account's conversation with the API in this run: its token, pacing and counters."""

    account: str
    ig_user_id: str
    token: SecretStr
    paused_until: float = 0.0  # time.monotonic() before which this account makes no call
    usage: Usage = field(default_factory=Usage)
    http_requests: int = 0
    retries: int = 0
    waits: int = 0
    wait_seconds: float = 0.0


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


@dataclass(slots=True)
class Listing:
    """The live stories of an account, and what had to be skipped while reading them."""

    stories: list[Story] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pages: int = 0


@dataclass(frozen=True, slots=True)
class Exchange:
    """One answer: HTTP status (None for an unfinished batch slot), parsed body, headers."""

    status: int | None
    body: object
    headers: Sequence[tuple[str, str]] = ()


class GraphClient:
    """A Graph API client bound to one base URL and version, shared by the accounts of a run."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_connections: int = 10,
        policy: RetryPolicy | None = None,
        deadline: Deadline | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.version = version
        self.policy = policy or RetryPolicy()
        self.deadline = deadline or Deadline(3600)
        # Metrics Meta refused in this run: not asked again for later stories or accounts.
        self.rejected_metrics: set[str] = set()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
            headers={"User-Agent": "ig-story-metrics"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self, session: Session, seconds: float, why: GraphError | None) -> None:
        """Sleep `seconds` for this account, or raise BudgetExhausted when the run cannot afford it."""
        if seconds <= 0:
            return
        if not self.deadline.allows(seconds):
            reason = f" (last error: {why.describe()})" if why else ""
            raise BudgetExhausted(
                f"run time budget exhausted: a {seconds:.1f}s wait does not fit in the "
                f"{self.deadline.remaining():.1f}s left{reason}"
            )
        session.waits += 1
        session.wait_seconds += seconds
        await self._sleep(seconds)

    async def _pace(self, session: Session) -> None:
        """Hold the account back while it is paused (throttled, or close to its limit)."""
        pause = session.paused_until - time.monotonic()
        await self._wait(session, pause, None)

    def _note_usage(self, session: Session, usage: Usage) -> None:
        session.usage = usage
        pause = self.policy.usage_pause(usage)
        if pause > 0:
            session.paused_until = max(session.paused_until, time.monotonic() + pause)

    def _retry_delay(self, session: Session, error: GraphError, attempt: int) -> float:
        if isinstance(error, ThrottledError):
            delay = error.retry_after or self.policy.backoff(attempt, self._rng)
            session.paused_until = max(session.paused_until, time.monotonic() + delay)
            return delay
        return self.policy.backoff(attempt, self._rng)

    # -- one HTTP exchange, retried ----------------------------------------------------------

    async def _send(self, session: Session, request: httpx.Request) -> Exchange:
        session.http_requests += 1
        timeout = min(self._timeout, max(self.deadline.remaining(), 0.1))
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"timeout talking to the Graph API ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"network error talking to the Graph API: {redact(str(exc)) or type(exc).__name__}"
            ) from None
        headers = list(response.headers.multi_items())
        self._note_usage(session, parse_usage(headers))
        return Exchange(response.status_code, parse_json(response.content), headers)

    async def _exchange(
        self, session: Session, build: Callable[[], httpx.Request], check: Callable[[object], None]
    ) -> object:
        """Send until the answer is usable: retry transient errors and throttling, within budget.

        `check` raises BadResponse when a 2xx body is not of the expected shape (retried too).
        """
        attempt = 0
        while True:
            await self._pace(session)
            try:
                answer = await self._send(session, build())
                error = classify(
                    answer.status or 0,
                    answer.body,
                    retry_after=session.usage.regain_seconds or None,
                )
                if error is None:
                    check(answer.body)
                    return answer.body
            except TransientError as exc:
                error = exc
            attempt += 1
            retryable = isinstance(error, TransientError | ThrottledError)
            if not retryable or attempt >= self.policy.max_attempts:
                raise error
            session.retries += 1
            await self._wait(session, self._retry_delay(session, error, attempt), error)

    # -- listing -----------------------------------------------------------------------------

    async def list_stories(self, session: Session) -> Listing:
        """Every live story of the account, following `paging.next` until it is absent."""
        query = urlencode({"fields": STORY_FIELDS, "limit": PAGE_LIMIT}, safe=",")
        path: str | None = f"{self.version}/{session.ig_user_id}/stories?{query}"
        listing = Listing()
        seen: set[str] = set()
        auth = {"Authorization": f"Bearer {session.token.get_secret_value()}"}
        while path is not None:
            if path in seen:
                raise BadResponse("the Graph API repeated a paging.next link; stopping the listing")
            if listing.pages >= MAX_PAGES:
                raise BadResponse(f"more than {MAX_PAGES} pages of stories; stopping the listing")
            seen.add(path)
            try:
                body = await self._exchange(
                    session,
                    partial(self._http.build_request, "GET", path, headers=auth),
                    _check_listing,
                )
            except StoryExpired as exc:  # 100/33 on the account itself: unknown or invisible id
                raise AccountFatal(exc.message, code=exc.code, subcode=exc.subcode) from None
            assert isinstance(body, dict)  # noqa: S101 - guaranteed by _check_listing
            listing.pages += 1
            for item in body["data"]:
                story = _story(item)
                if isinstance(story, Story):
                    listing.stories.append(story)
                else:
                    listing.skipped.append(story)
            path = _next_path(body)
        return listing

    # -- insights ----------------------------------------------------------------------------

    async def batch(self, session: Session, relative_urls: Sequence[str]) -> list[Exchange]:
        """One Graph batch POST of GET operations (retried as a whole); answers in request order."""
        if not 0 < len(relative_urls) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} operations, not {len(relative_urls)}")
        ops = [{"method": "GET", "relative_url": url} for url in relative_urls]
        form = {
            "access_token": session.token.get_secret_value(),
            "batch": json.dumps(ops, separators=(",", ":")),
            "include_headers": "true",
        }

        def check(body: object) -> None:
            if not isinstance(body, list) or len(body) != len(ops):
                got = len(body) if isinstance(body, list) else "no list"
                raise BadResponse(f"batch answer does not hold {len(ops)} operations (got {got})")

        body = await self._exchange(
            session, lambda: self._http.build_request("POST", f"{self.version}/", data=form), check
        )
        assert isinstance(body, list)  # noqa: S101 - guaranteed by check
        return [_operation(slot) for slot in body]

    async def fetch_insights(
        self, session: Session, story_ids: Sequence[str]
    ) -> dict[str, list[CallResult]]:
        """The insights calls of every story, in rounds of batches, each call's final result.

        A round sends every pending call; what comes back transient or throttled is pending again
        after a wait, a rejected metric is dropped from its call, and a call whose metric Meta did
        not name is split into one call per metric to find it. Account-fatal errors raise.
        """
        results: dict[str, list[CallResult]] = {story_id: [] for story_id in story_ids}
        pending: list[tuple[InsightsCall, tuple[str, ...]]] = []
        for story_id in story_ids:
            for metrics, breakdown in metric_requests():
                pending.append((InsightsCall(story_id, metrics, breakdown), ()))
        attempts: dict[InsightsCall, int] = {}
        while pending:
            again: list[tuple[InsightsCall, tuple[str, ...]]] = []
            delay, last_error = 0.0, None
            for batch in _chunks(pending, MAX_BATCH):
                # filtered per batch: a metric refused in the previous batch is not asked again
                chunk = list(self._without_rejected(batch, results))
                if not chunk:
                    continue
                answers = await self._batch_or_fail(session, chunk)
                for (call, rejected), answer in zip(chunk, answers, strict=True):
                    outcome = self._settle(session, call, rejected, answer, attempts)
                    if isinstance(outcome, CallResult):
                        results[call.story_id].append(outcome)
                        continue
                    again.extend(outcome)
                    if answer.error is not None and not isinstance(answer.error, MetricRejected):
                        last_error = answer.error
                        delay = max(delay, self._retry_delay(session, answer.error, attempts[call]))
            pending = again
            if pending and delay > 0:
                try:
                    await self._wait(session, delay, last_error)
                except BudgetExhausted as exc:
                    for call, rejected in pending:
                        results[call.story_id].append(
                            CallResult(call, error=exc, rejected=rejected)
                        )
                    pending = []
        return results

    def _without_rejected(
        self,
        pending: Sequence[tuple[InsightsCall, tuple[str, ...]]],
        results: dict[str, list[CallResult]],
    ) -> Iterator[tuple[InsightsCall, tuple[str, ...]]]:
        """Pending calls minus the metrics already refused this run (a call left empty is done)."""
        for call, rejected in pending:
            dropped = tuple(m for m in call.metrics if m in self.rejected_metrics)
            if not dropped:
                yield call, rejected
                continue
            kept = tuple(m for m in call.metrics if m not in self.rejected_metrics)
            all_rejected = tuple(dict.fromkeys((*rejected, *dropped)))
            if kept:
                yield replace(call, metrics=kept), all_rejected
            else:
                results[call.story_id].append(CallResult(call, rejected=all_rejected))

    async def _batch_or_fail(
        self,
        session: Session,
        chunk: Sequence[tuple[InsightsCall, tuple[str, ...]]],
    ) -> list[CallResult]:
        """Classified answers of one batch; if the batch itself keeps failing, every call fails."""
        try:
            answers = await self.batch(session, [call.relative_url() for call, _ in chunk])
        except (TransientError, ThrottledError) as exc:
            return [CallResult(call, error=exc, rejected=rej) for call, rej in chunk]
        return [
            _call_result(call, answer) for (call, _), answer in zip(chunk, answers, strict=True)
        ]

    def _settle(
        self,
        session: Session,
        call: InsightsCall,
        rejected: tuple[str, ...],
        answer: CallResult,
        attempts: dict[InsightsCall, int],
    ) -> CallResult | list[tuple[InsightsCall, tuple[str, ...]]]:
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
            self.rejected_metrics.update(dropped)
            kept = tuple(m for m in call.metrics if m not in dropped)
            all_rejected = (*rejected, *dropped)
            if not kept:
                return CallResult(call, rejected=all_rejected)
            return [(replace(call, metrics=kept), all_rejected)]
        if isinstance(error, TransientError | ThrottledError):
            attempts[call] = attempts.get(call, 0) + 1
            if attempts[call] < self.policy.max_attempts:
                session.retries += 1
                return [(call, rejected)]
            error = type(error)(
                f"gave up after {attempts[call]} attempts: {error.message}",
                code=error.code,
                subcode=error.subcode,
                http_status=error.http_status,
                fbtrace_id=error.fbtrace_id,
            )
        return CallResult(call, error=error, rejected=rejected)


def _check_listing(body: object) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadResponse("stories listing without a data list")


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


def _operation(slot: object) -> Exchange:
    """A batch slot `{code, headers, body: "<json string>"}`, or `null` when it did not finish."""
    if not isinstance(slot, dict):
        return Exchange(None, None)
    code = slot.get("code")
    raw_headers = slot.get("headers")
    headers = [
        (str(h.get("name")), str(h.get("value")))
        for h in (raw_headers if isinstance(raw_headers, list) else [])
        if isinstance(h, dict)
    ]
    body = slot.get("body")
    parsed = parse_json(body) if isinstance(body, str) else body
    return Exchange(code if isinstance(code, int) else 0, parsed, headers)


def _next_path(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    nxt = paging.get("next") if isinstance(paging, dict) else None
    if not isinstance(nxt, str) or not nxt:
        return None
    return strip_secrets(nxt).lstrip("/")


def _story(item: object) -> Story | str:
    """A listed story, or why the item was skipped."""
    if not isinstance(item, dict):
        return "a listing item that is not an object"
    story_id = item.get("id")
    if isinstance(story_id, int) and not isinstance(story_id, bool):
        story_id = str(story_id)
    if not isinstance(story_id, str) or not story_id.isdigit():
        return "a listed story without a valid id"
    stamp = item.get("timestamp")
    try:
        posted_at = parse_timestamp(stamp) if isinstance(stamp, str) else None
    except ValueError:
        posted_at = None
    if posted_at is None:
        return f"story {story_id} without a valid timestamp"

    def text(key: str) -> str | None:
        value = item.get(key)
        return value if isinstance(value, str) else None

    return Story(
        id=story_id,
        posted_at=posted_at,
        media_type=text("media_type"),
        media_product_type=text("media_product_type"),
        permalink=text("permalink"),
        caption=text("caption"),
    )
