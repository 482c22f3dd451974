"""The HTTP side of talking to Meta: one `GraphClient` per run, one `Session` per account.

- The token travels in the `Authorization` header (GET) or the POST body (batch), never in a URL.
- Every answer goes through `errors.classify()`; `RetryPolicy.decide()` says whether and when to try
  again. Throttling pauses the account for the announced regain time; usage headers at or above the
  policy's threshold pause it before its next call. All waiting is bounded by the run's `Deadline`.
- `batch()` sends up to 50 GET operations in one POST; `stories.py` (the first page of a listing)
  and `insights.py` build on it, through `retrying()` for a single operation.
  When Meta refuses a batch POST as a whole with an error that is not transient, throttling or
  auth (a deprecated request feature), the client sends plain GETs instead for the rest of the run.
- With an app secret, every call carries `appsecret_proof` (hex HMAC-SHA256 of the token keyed with
  the secret): in the query of a GET, in the body of a POST. Redaction masks it like a token.
- A client serves one host: `login` says which ("facebook": graph.facebook.com, "instagram":
  graph.instagram.com), so that only the metrics that host knows are asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from ig_story_metrics.clock import Deadline
from ig_story_metrics.graph.errors import (
    AccountFatal,
    BadResponse,
    GraphError,
    ThrottledError,
    TransientError,
    UnsupportedRequest,
    classify,
    parse_json,
)
from ig_story_metrics.graph.form import encode as form_body
from ig_story_metrics.graph.form import operations as form_operations
from ig_story_metrics.graph.packer import Packer
from ig_story_metrics.graph.pools import MAX_CONNECTIONS, Pools
from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.graph.usage import Usage, parse_usage
from ig_story_metrics.model.accounts import Login
from ig_story_metrics.model.counters import Counters
from ig_story_metrics.model.metrics import metric_requests
from ig_story_metrics.redact import scrub

MAX_BATCH = 50
PLAIN_CONCURRENCY = 8  # plain GETs in flight per account when batches are refused
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
BATCH_QUOTED = frozenset({"batch"})  # the form value `form.operations` quotes itself
Transport = httpx.AsyncBaseTransport


@dataclass(slots=True)
class Session:
    """One account's conversation with the API in this run: its token, pacing and counters."""

    account: str
    ig_user_id: str
    token: SecretStr
    paused_until: float = 0.0  # time.monotonic() before which this account makes no call
    usage: Usage = field(default_factory=Usage)
    counters: Counters = field(default_factory=Counters)
    # metric -> why this account stopped asking for it in this run (refused for a whole batch)
    dropped_metrics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One answer: HTTP status (None for an unfinished batch slot or a failed GET), parsed body,
    headers; `error` says why there is no answer (a batch slot that did not finish, a plain GET
    that failed)."""

    status: int | None
    body: object
    headers: Sequence[tuple[str, str]] = ()
    error: GraphError | None = None


class GraphClient:
    """A Graph API client bound to one base URL and version, shared by the accounts of a run."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        transport: Transport | None = None,
        timeout: float = 30.0,
        max_connections: int = MAX_CONNECTIONS,
        policy: RetryPolicy | None = None,
        deadline: Deadline | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        extra_metrics: Sequence[str] = (),
        app_secret: SecretStr | None = None,
        login: Login = "facebook",
    ) -> None:
        self.version = version
        self.login: Login = login
        self._app_secret = app_secret
        self.policy = policy or RetryPolicy()
        self.deadline = deadline or Deadline(3600)
        # The insights calls of one story: the plain metrics (with the opt-in ones), breakdowns.
        self.metric_requests = metric_requests(extra_metrics)
        # Why Meta refused a batch POST as a whole; from then on this client sends plain GETs.
        self.batch_refused: GraphError | None = None
        self._sleep = sleep
        self.packer = Packer(self)  # insights operations of accounts sharing a token, packed
        self._timeout = timeout
        self._http = Pools(
            base_url, transport=transport, timeout=timeout, max_connections=max_connections
        )

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    @property
    def sending(self) -> asyncio.Event:
        """Set once this client has sent its first HTTP request: from then on the run waits on
        the network, and what it needs later can be loaded beside it (jobs/hourly.py)."""
        return self._http.sending

    # -- waiting -------------------------------------------------------------------------------

    async def wait(self, session: Session, seconds: float, why: GraphError | None) -> None:
        """Sleep `seconds` for this account, or raise BudgetExhausted when the run cannot afford it."""
        if seconds <= 0:
            return
        exhausted = self.policy.check_budget(seconds, self.deadline, why)
        if exhausted is not None:
            raise exhausted
        session.counters.waits += 1
        session.counters.wait_seconds += seconds
        await self._sleep(seconds)

    async def pace(self, session: Session) -> None:
        """Hold the account back while it is paused (throttled, or close to its limit)."""
        await self.wait(session, session.paused_until - time.monotonic(), None)

    def pause_for(self, session: Session, error: GraphError, seconds: float) -> None:
        """A throttled account makes no call for `seconds` (the wait a decision announced)."""
        if isinstance(error, ThrottledError):
            session.paused_until = max(session.paused_until, time.monotonic() + seconds)

    def note_usage(self, session: Session, usage: Usage) -> None:
        session.usage = usage
        pause = self.policy.usage_pause(usage)
        if pause > 0:
            session.paused_until = max(session.paused_until, time.monotonic() + pause)

    # -- one HTTP exchange, retried ----------------------------------------------------------

    async def _send(self, session: Session, request: httpx.Request, operations: int) -> Exchange:
        session.counters.http_requests += 1
        session.counters.operations += operations
        timeout = min(self._timeout, max(self.deadline.remaining(), 0.1))
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response, content = await self._http.carry(request)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"timeout talking to the Graph API ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"network error talking to the Graph API: {scrub(str(exc)) or type(exc).__name__}"
            ) from None
        except httpx.DecodingError as exc:  # e.g. `Content-Encoding: gzip` over a body that is not
            raise BadResponse(
                f"undecodable response body from the Graph API: {scrub(str(exc)) or 'no detail'}"
            ) from None
        except httpx.RequestError as exc:  # anything else httpx raises about one request
            raise TransientError(
                f"request to the Graph API failed ({type(exc).__name__}): {scrub(str(exc))}"
            ) from None
        headers = list(response.headers.multi_items())
        self.note_usage(session, parse_usage(headers))
        return Exchange(response.status_code, parse_json(content), headers)

    async def exchange(
        self,
        session: Session,
        build: Callable[[], httpx.Request],
        check: Callable[[object], None],
        operations: int = 1,
        final: tuple[type[GraphError], ...] = (),
    ) -> object:
        """Send until the answer is usable: retry transient errors and throttling, within budget.

        `check` raises BadResponse when a 2xx body is not of the expected shape (retried too);
        errors of a `final` kind are never retried.
        """
        return await self.retrying(
            session, lambda: self._send(session, build(), operations), check, final
        )

    async def retrying(
        self,
        session: Session,
        send: Callable[[], Awaitable[Exchange]],
        check: Callable[[object], None],
        final: tuple[type[GraphError], ...] = (),
    ) -> object:
        """`exchange` for any way of sending: an HTTP request, or an operation of a batch."""
        attempt = 0
        while True:
            await self.pace(session)
            try:
                answer = await send()
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
            if isinstance(error, final):
                raise error
            attempt += 1
            decision = self.policy.decide(error, attempt, self.deadline)
            if not decision.retry:
                raise decision.error or error
            session.counters.retries += 1
            self.pause_for(session, error, decision.after)
            await self.wait(session, decision.after, error)

    def proof(self, token: SecretStr) -> dict[str, str]:
        """`{"appsecret_proof": ...}` for this token when the client has an app secret, else {}."""
        if self._app_secret is None:
            return {}
        return {"appsecret_proof": appsecret_proof(token, self._app_secret)}

    def get(self, session: Session, path: str) -> httpx.Request:
        """A GET of `path` (relative to the base URL) with the token in the header."""
        auth = {"Authorization": f"Bearer {session.token.get_secret_value()}"}
        proof = self.proof(session.token)
        if proof:
            path += ("&" if "?" in path else "?") + urlencode(proof)
        return self._http.build_request("GET", path, headers=auth)

    def post(self, session: Session, path: str, form: dict[str, str]) -> httpx.Request:
        """A POST of `form` to `path`, with the token (if any) and its proof in the body."""
        data = dict(form)
        if session.token.get_secret_value():
            data["access_token"] = session.token.get_secret_value()
            data.update(self.proof(session.token))
        return self._http.build_request("POST", path, data=data)

    async def batch(
        self, session: Session, relative_urls: Sequence[str], *, pack: bool = False
    ) -> list[Exchange]:
        """One Graph batch POST of GET operations (retried as a whole); answers in request order.
        With `pack`, the operations share batches with other accounts of the same token
        (`packer.py`).

        A batch refused as a whole (not transient, throttling or auth) switches this client to
        plain GETs, one per operation, for the rest of the run.
        """
        if not 0 < len(relative_urls) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} operations, not {len(relative_urls)}")
        if self.batch_refused is None:
            try:
                if pack:
                    return await self.packer.batch(session, relative_urls)
                return await self.post_batch(session, relative_urls)
            except GraphError as exc:
                if not refuses_batches(exc):
                    raise
                self.batch_refused = exc
        return await self._plain(session, relative_urls)

    async def _plain(self, session: Session, relative_urls: Sequence[str]) -> list[Exchange]:
        """The operations as plain GETs (one attempt each; the caller retries per operation)."""
        gate = asyncio.Semaphore(PLAIN_CONCURRENCY)

        async def one(url: str) -> Exchange:
            async with gate:
                try:
                    await self.pace(session)
                    return await self._send(session, self.get(session, f"{self.version}/{url}"), 1)
                except TransientError as exc:
                    return Exchange(None, None, error=exc)

        return list(await asyncio.gather(*(one(url) for url in relative_urls)))

    async def post_batch(
        self, session: Session, relative_urls: Sequence[str], operations: int | None = None
    ) -> list[Exchange]:
        """One batch POST under `session`'s token, which counts `operations` of it (default all)."""
        form = {
            "access_token": session.token.get_secret_value(),
            "batch": form_operations(relative_urls),
            "include_headers": "true",
            **self.proof(session.token),
        }
        sent = len(relative_urls)

        def check(body: object) -> None:
            if not isinstance(body, list) or len(body) != sent:
                got = len(body) if isinstance(body, list) else "no list"
                raise BadResponse(f"batch answer does not hold {sent} operations (got {got})")

        content = form_body(form, BATCH_QUOTED)  # encoded once, for every attempt
        body = await self.exchange(
            session,
            lambda: self._http.build_request(
                "POST", f"{self.version}/", content=content, headers=FORM_HEADERS
            ),
            check,
            operations=sent if operations is None else operations,
            final=(UnsupportedRequest,),
        )
        assert isinstance(body, list)  # noqa: S101 - guaranteed by check
        return [_operation(slot) for slot in body]


def refuses_batches(error: GraphError) -> bool:
    """Whether a batch POST's final error refuses batches as such (send plain GETs instead)."""
    if isinstance(error, UnsupportedRequest):
        return True
    return not isinstance(error, TransientError | ThrottledError | AccountFatal)


def appsecret_proof(token: SecretStr, app_secret: SecretStr) -> str:
    """Hex HMAC-SHA256 of the token keyed with the app secret (Meta's `appsecret_proof`)."""
    key = app_secret.get_secret_value().encode()
    return hmac.new(key, token.get_secret_value().encode(), hashlib.sha256).hexdigest()


def _operation(slot: object) -> Exchange:
    """A batch slot `{code, headers, body: "<json string>"}`, or `null` when it did not finish
    (a transient error: the operation is tried again)."""
    if not isinstance(slot, dict):
        return Exchange(
            None, None, error=TransientError("batch operation did not finish (null slot)")
        )
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
