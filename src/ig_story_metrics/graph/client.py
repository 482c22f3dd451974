"""The async Graph API client: the only code that speaks HTTP to Meta.

- `list_stories()` follows `paging.next` to the end (tokens stripped from the links Meta returns).
- `fetch_insights()` asks the three insights calls of every story as Graph batch requests of at most
  50 operations, so an account with 16 stories costs one listing and one batch.
- The token travels in the `Authorization` header (GET) or the POST body (batch), never in a URL.
- Every response goes through `errors.classify()`; usage headers through `throttle.parse_usage()`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from ig_story_metrics.graph.errors import (
    BadResponse,
    GraphError,
    TransientError,
    classify,
    parse_json,
    redact,
)
from ig_story_metrics.graph.throttle import Usage, parse_usage
from ig_story_metrics.records import Story, metric_requests, parse_timestamp

MAX_BATCH = 50
PAGE_LIMIT = 50
MAX_PAGES = 100
STORY_FIELDS = "id,media_type,media_product_type,permalink,caption,timestamp"
_SECRET_PARAMS = frozenset({"access_token", "appsecret_proof"})


def strip_secrets(url: str) -> str:
    """`path?query` of a URL with token-bearing parameters removed (Meta puts them in paging.next)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    kept = urlencode([(k, v) for k, v in query if k.lower() not in _SECRET_PARAMS])
    return parts.path + (f"?{kept}" if kept else "")


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
    """What one insights call came back with: a payload, or the error to act on."""

    call: InsightsCall
    payload: object = None
    error: GraphError | None = None


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
    """A Graph API client bound to one base URL and version; share it across accounts."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_connections: int = 10,
    ) -> None:
        self.version = version
        self.usage = Usage()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
            headers={"User-Agent": "ig-story-metrics"},
            follow_redirects=False,
        )
        self.http_requests = 0

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one HTTP exchange --------------------------------------------------------------------

    async def _send(self, request: httpx.Request) -> Exchange:
        self.http_requests += 1
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"timeout talking to the Graph API ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"network error talking to the Graph API: {redact(str(exc))}"
            ) from None
        headers = list(response.headers.multi_items())
        self.usage = self.usage.worst(parse_usage(headers))
        return Exchange(response.status_code, parse_json(response.content), headers)

    async def _get(self, path: str, token: SecretStr) -> object:
        request = self._http.build_request(
            "GET", path, headers={"Authorization": f"Bearer {token.get_secret_value()}"}
        )
        answer = await self._send(request)
        error = classify(answer.status or 0, answer.body)
        if error is not None:
            raise error
        return answer.body

    # -- listing -----------------------------------------------------------------------------

    async def list_stories(self, ig_user_id: str, token: SecretStr) -> Listing:
        """Every live story of the account, following `paging.next` until it is absent."""
        query = urlencode({"fields": STORY_FIELDS, "limit": PAGE_LIMIT}, safe=",")
        path: str | None = f"{self.version}/{ig_user_id}/stories?{query}"
        listing = Listing()
        seen: set[str] = set()
        while path is not None:
            if path in seen:
                raise BadResponse("the Graph API repeated a paging.next link; stopping the listing")
            if listing.pages >= MAX_PAGES:
                raise BadResponse(f"more than {MAX_PAGES} pages of stories; stopping the listing")
            seen.add(path)
            body = await self._get(path, token)
            listing.pages += 1
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise BadResponse("stories listing without a data list")
            for item in body["data"]:
                story = _story(item)
                if isinstance(story, Story):
                    listing.stories.append(story)
                else:
                    listing.skipped.append(story)
            path = _next_path(body)
        return listing

    # -- insights ----------------------------------------------------------------------------

    async def batch(self, relative_urls: Sequence[str], token: SecretStr) -> list[Exchange]:
        """One Graph batch POST of GET operations; answers in request order."""
        if not 0 < len(relative_urls) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} operations, not {len(relative_urls)}")
        ops = [{"method": "GET", "relative_url": url} for url in relative_urls]
        form = {
            "access_token": token.get_secret_value(),
            "batch": json.dumps(ops, separators=(",", ":")),
            "include_headers": "true",
        }
        request = self._http.build_request("POST", f"{self.version}/", data=form)
        answer = await self._send(request)
        error = classify(answer.status or 0, answer.body)
        if error is not None:
            raise error
        if not isinstance(answer.body, list) or len(answer.body) != len(ops):
            raise BadResponse(
                f"batch answer does not hold {len(ops)} operations"
                f" (got {len(answer.body) if isinstance(answer.body, list) else 'no list'})"
            )
        return [_operation(slot) for slot in answer.body]

    async def fetch_insights(
        self, story_ids: Sequence[str], token: SecretStr
    ) -> dict[str, list[CallResult]]:
        """The insights calls of every story, batched; each call's payload or classified error."""
        calls = [
            InsightsCall(story_id, metrics, breakdown)
            for story_id in story_ids
            for metrics, breakdown in metric_requests()
        ]
        results: dict[str, list[CallResult]] = {story_id: [] for story_id in story_ids}
        for chunk in _chunks(calls, MAX_BATCH):
            answers = await self.batch([call.relative_url() for call in chunk], token)
            for call, answer in zip(chunk, answers, strict=True):
                results[call.story_id].append(_call_result(call, answer))
        return results


def _chunks(items: Sequence[InsightsCall], size: int) -> Iterator[Sequence[InsightsCall]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _call_result(call: InsightsCall, answer: Exchange) -> CallResult:
    if answer.status is None:
        return CallResult(call, error=TransientError("batch operation did not finish (null slot)"))
    error = classify(answer.status, answer.body, requested_metrics=call.metrics)
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
