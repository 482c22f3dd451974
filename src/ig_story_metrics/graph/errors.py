"""One exception tree for everything the Graph API can do wrong, sorted by what the caller does.

    GraphError                  code, subcode, message, fbtrace_id, http_status
    ├── TransientError          retry with backoff: codes 1 and 2, is_transient, HTTP 5xx, timeouts,
    │   │                       connection resets, a null batch slot
    │   ├── BadResponse         a body that is not the JSON we expect (HTML error page, wrong shape,
    │   │                       a body that does not decode)
    │   └── UnsupportedRequest  100/33 "Unsupported get request": the object is gone or invisible,
    │                           or (on a live story) a disguised throttle: retried; final for an
    │                           account id (the listing) and for a story past its expiry
    ├── ThrottledError          wait, then retry: codes 4, 17, 32, 341, 613, 80001, 80002, HTTP 429
    ├── StorySkipped            this story has no insights now; record why and move on
    │   └── NotEnoughViewers    code 10 whose message says "not enough viewers"
    ├── MetricRejected          #100 because of named metrics: drop them and ask again
    ├── AccountFatal            190 (and subcodes), 102, permission errors 10 / 200-299 / 3: stop the account
    └── RequestBug              anything else: our request is wrong, retrying will not help

`classify()` is the only place that turns a response into one of these; everything else dispatches on
the class, and `retry.RetryPolicy.decide()` is the only place that decides whether and when to try
again. Messages never carry a token: every message passes through `redact.scrub()`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from ig_story_metrics.errors import IgStoryMetricsError
from ig_story_metrics.model.numbers import as_int
from ig_story_metrics.redact import scrub

THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, 80001, 80002})
TRANSIENT_CODES = frozenset({1, 2})
TOKEN_CODES = frozenset({102, 190})
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})


class GraphError(IgStoryMetricsError):
    """A failed Graph API call, with what Meta said about it."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        http_status: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        self.message = scrub(message)
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.fbtrace_id = fbtrace_id
        super().__init__(self.message)

    def describe(self) -> str:
        """A one-line description for reports and logs: message, code, subcode, trace id."""
        parts = [self.message]
        if self.code is not None:
            parts.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode else ""))
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.fbtrace_id:
            parts.append(f"fbtrace_id {self.fbtrace_id}")
        return "; ".join(parts)


E = TypeVar("E", bound="GraphError")


class TransientError(GraphError):
    """Worth retrying after a backoff."""


class BadResponse(TransientError):
    """The body was not the JSON shape the Graph API documents."""


class ThrottledError(GraphError):
    """A rate limit: wait `retry_after` seconds (when Meta says) before calling this account again."""

    retry_after: float | None = None


class StorySkipped(GraphError):
    """The story has no insights to give right now; not a failure of the run."""


class NotEnoughViewers(StorySkipped):
    """Fewer than five viewers: Meta withholds every metric of the story."""


class UnsupportedRequest(TransientError):
    """100/33: the object does not exist, is invisible, or Meta throttles in disguise.

    Whether a story is `expired` is decided from its expiry and the listing, never from this alone.
    """


class MetricRejected(GraphError):
    """The call failed because of the named metrics (empty: Meta did not say which)."""

    metrics: tuple[str, ...] = ()


class AccountFatal(GraphError):
    """The account cannot be read at all (token, permission, unknown id): stop it, tell the user."""


class RequestBug(GraphError):
    """Our request is wrong; retrying the same call will fail the same way."""


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The `error` object of a Graph response, tolerant of missing or wrongly typed fields."""

    message: str = "unknown Graph API error"
    code: int | None = None
    subcode: int | None = None
    is_transient: bool = False
    fbtrace_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def parse_error_body(body: object) -> ErrorBody | None:
    """The `error` object of a parsed body, or None when the body carries no error."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    err = body["error"]
    msg = err.get("message")
    trace = err.get("fbtrace_id")
    return ErrorBody(
        message=msg if isinstance(msg, str) and msg else "unknown Graph API error",
        code=as_int(err.get("code"), digits=True),
        subcode=as_int(err.get("error_subcode"), digits=True),
        is_transient=err.get("is_transient") is True,
        fbtrace_id=trace if isinstance(trace, str) else None,
    )


_METRIC_INDEX = re.compile(r"metric\[(\d+)\]")


def rejected_metrics(message: str, requested: Sequence[str]) -> tuple[str, ...]:
    """The requested metrics a #100 message blames; empty when it names none of them for sure."""
    index = _METRIC_INDEX.search(message)
    if index is not None:
        i = int(index.group(1))
        return (requested[i],) if i < len(requested) else ()
    lowered = message.lower()
    named = tuple(
        m for m in requested if re.search(rf"(?<![a-z_]){re.escape(m)}(?![a-z_])", lowered)
    )
    return named


def classify(
    status: int,
    body: object,
    *,
    requested_metrics: Sequence[str] = (),
    retry_after: float | None = None,
) -> GraphError | None:
    """Map one response (or batch operation) to None (success) or the error to act on.

    `body` is the parsed JSON (or None when it was not JSON). Decide by the Graph `code` first, since
    Meta returns most errors, throttling included, as HTTP 400; fall back to the HTTP status.
    """
    err = parse_error_body(body)
    if err is None:
        if 200 <= status < 300:
            if isinstance(body, dict | list):
                return None
            return BadResponse("response body is not JSON", http_status=status)
        return _by_status(status)
    code, text = err.code, err.message.lower()

    def make(kind: type[E]) -> E:
        error = kind(
            err.message,
            code=err.code,
            subcode=err.subcode,
            http_status=status,
            fbtrace_id=err.fbtrace_id,
        )
        return error

    if code in THROTTLE_CODES or status == 429:
        throttled = make(ThrottledError)
        throttled.retry_after = retry_after
        return throttled
    if code == 10 and "not enough viewers" in text:
        return make(NotEnoughViewers)
    if code in TOKEN_CODES or code in PERMISSION_CODES:
        return make(AccountFatal)
    if err.is_transient or code in TRANSIENT_CODES or status >= 500:
        return make(TransientError)
    if code == 100 and err.subcode == 33:
        return make(UnsupportedRequest)
    if code == 100 and requested_metrics and "metric" in text:
        rejected = make(MetricRejected)
        rejected.metrics = rejected_metrics(err.message, requested_metrics)
        return rejected
    return make(RequestBug)


def _by_status(status: int) -> GraphError:
    if status == 429:
        return ThrottledError("HTTP 429 Too Many Requests", http_status=status)
    if status >= 500:
        return TransientError(f"HTTP {status} from the Graph API", http_status=status)
    return BadResponse(f"HTTP {status} without a Graph error body", http_status=status)


def parse_json(text: str | bytes) -> object:
    """Parse a body; None when it is not JSON (an HTML error page, an empty body).

    orjson first (several times faster: a fleet's run parses tens of thousands of bodies), the
    standard library for what orjson refuses (a lone surrogate, NaN, nesting past 1024), so such
    bodies read as before; nesting past the interpreter's depth is no JSON we can read (None). orjson reads an integer literal past 64 bits as a float where `json`
    gives an int: every number we keep goes through `as_int` (both are None past 2**63) or
    `as_float` (a float either way), so the values are the same.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting past any parser's depth
        return None
