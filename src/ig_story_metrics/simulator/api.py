"""The Graph API's rules, as a route table over the simulated world.

`GraphSimulator.handle()` takes one request (method, path, query, form, headers) and returns
`(status, headers, body)`, exactly what the HTTP layer in `server.py` sends; batch operations go
through the same routes. Rules kept from the real API (see shared/graph-api.md):

- tokens in `Authorization: Bearer|OAuth`, `access_token` in the query or the POST body; an unknown
  token is `#190`, a token without access to the account is `#10` permission denied;
- `/{ig-user-id}/stories` pages with `limit`/`after` and `paging.next` (which, like Meta's, repeats
  the access token: clients must strip it);
- `/{ig-media-id}/insights` validates every metric (a deprecated or unknown one fails the whole call
  with `#100`), allows a breakdown only with its metric, and answers `(#10) Not enough viewers` while
  the story has fewer than 5 viewers; values arrive as `values[0].value` (and `total_value` with
  breakdowns, in lower case);
- a batch is a POST of at most 50 operations, each answered `{code, headers, body: "<json>"}`;
- every answer carries `X-App-Usage` and `X-Business-Use-Case-Usage`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ig_story_metrics.simulator.faults import Dice, Faults
from ig_story_metrics.simulator.world import World

DEFAULT_TOKEN = "sim-token"  # noqa: S105 - the simulator's well-known demo token, not a secret
MAX_BATCH = 50
DEFAULT_PAGE_SIZE = 25
VIEWER_THRESHOLD = 5

STORY_METRICS = frozenset(
    {
        "views",
        "reach",
        "replies",
        "shares",
        "total_interactions",
        "follows",
        "profile_visits",
        "reposts",
        "navigation",
        "profile_activity",
    }
)
BREAKDOWN_OF = {"navigation": "story_navigation_action_type", "profile_activity": "action_type"}
BREAKDOWN_PARTS = {
    "navigation": ("tap_forward", "tap_back", "tap_exit", "swipe_forward"),
    "profile_activity": ("bio_link_clicked", "call", "direction", "email", "other", "text"),
}
PART_COLUMN = {
    "tap_forward": "taps_forward",
    "tap_back": "taps_back",
    "tap_exit": "taps_exit",
    "swipe_forward": "swipe_forward",
    **{p: f"profile_activity_{p}" for p in BREAKDOWN_PARTS["profile_activity"]},
}
DEPRECATED = {
    "impressions": "(#100) Starting from version v22.0 and above, the impressions metric is no "
    "longer supported for the queried media.",
    "exits": "(#100) The Media Insights API does not support the exits metric for this media "
    "product type.",
    "taps_forward": "(#100) The Media Insights API does not support the taps_forward metric for "
    "this media product type.",
    "taps_back": "(#100) The Media Insights API does not support the taps_back metric for this "
    "media product type.",
}
NOT_FOR_STORIES = frozenset({"likes", "comments", "saved", "engagement", "video_views", "plays"})

Response = tuple[int, dict[str, str], Any]
Handler = Callable[["Request", re.Match[str]], Response]
# Runs before the routes (top_level: the HTTP request itself, not a batch operation); an answer
# refuses the request. `simulator/identity.py` guards tokens and appsecret_proof this way.
Guard = Callable[["Request", bool], Response | None]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names

    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip()
        return self.query.get("access_token") or self.form.get("access_token")


def graph_error(
    status: int,
    message: str,
    code: int,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
) -> Response:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "Sim" + base64.b32encode(message.encode()[:10]).decode().rstrip("=")
    return status, {}, {"error": error}


@dataclass
class Stats:
    """What clients did: HTTP requests, batch operations and calls, by kind and account."""

    http_requests: int = 0
    batches: int = 0
    operations: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    tokens_in_urls: int = 0


class GraphSimulator:
    """A fake Graph API over a `World`; thread-safe, deterministic for a given seed and clock."""

    def __init__(
        self,
        world: World | None = None,
        *,
        tokens: Mapping[str, frozenset[str] | None] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        hourly_call_budget: int = 4800,
        shape: str = "values",
        faults: Faults | None = None,
    ) -> None:
        self.world = world or World()
        # token -> the accounts it may read (None: every account)
        self.tokens: dict[str, frozenset[str] | None] = dict(tokens or {DEFAULT_TOKEN: None})
        self.page_size = page_size
        self.hourly_call_budget = hourly_call_budget
        self.shape = shape
        self.stats = Stats()
        self.faults = faults or Faults()
        self.dice = Dice(self.faults)
        self._blocked_until: dict[str, float] = {}  # account -> time.monotonic() a burst ends
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, int]] = Counter()
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"^/(?:v\d+\.\d+/)?(?P<user>\d+)/stories/?$"), self._stories),
            ("GET", re.compile(r"^/(?:v\d+\.\d+/)?(?P<media>\d+)/insights/?$"), self._insights),
            ("POST", re.compile(r"^/(?:v\d+\.\d+)?/?$"), self._batch),
        ]
        self.guards: list[Guard] = []

    # -- entry point --------------------------------------------------------------------------

    def handle(self, request: Request, *, top_level: bool = True) -> Response:
        if top_level:
            with self._lock:
                self.stats.http_requests += 1
                if "access_token=" in request.path or "access_token" in request.query:
                    self.stats.tokens_in_urls += 1
        for guard in self.guards:
            refused = guard(request, top_level)
            if refused is not None:
                return refused
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                return handler(request, match)
        return graph_error(
            400, f"Unknown path components: {request.path}", 2500, kind="OAuthException"
        )

    # -- access -------------------------------------------------------------------------------

    def _authorize(self, request: Request, account: str | None) -> Response | None:
        token = request.token()
        if not token:
            return graph_error(400, "An access token is required to request this resource.", 104)
        if token not in self.tokens:
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        allowed = self.tokens[token]
        if account is not None and allowed is not None and account not in allowed:
            return graph_error(
                403, "(#10) Application does not have permission for this action", 10
            )
        if account in self.faults.expired_tokens:
            return graph_error(
                400,
                "Error validating access token: Session has expired on Tuesday, 24-Nov-26 "
                "07:00:00 PST. The current time is Tuesday, 24-Nov-26 08:00:00 PST.",
                190,
                subcode=463,
            )
        return None

    def _injected(self, request: Request, account: str, ig_user_id: str) -> Response | None:
        """A throttling burst or a transient error, when the dice say so."""
        key = _key(request)
        now = time.monotonic()
        with self._lock:
            blocked = self._blocked_until.get(account, 0.0) - now
        if blocked <= 0 and self.dice.roll("throttle", key, self.faults.throttle_rate):
            blocked = self.faults.throttle_seconds
            with self._lock:
                self._blocked_until[account] = now + blocked
        if blocked > 0:
            status, _, body = graph_error(
                400, "(#80002) There have been too many calls to this Instagram account.", 80002
            )
            return status, self._usage(ig_user_id, regain_seconds=blocked), body
        if self.dice.roll("transient", key, self.faults.transient_rate):
            if self.dice.roll("transient-kind", key, 0.5):
                return graph_error(500, "An unknown error occurred", 1)
            status, headers, body = graph_error(503, "Service temporarily unavailable", 2)
            body["error"]["is_transient"] = True
            return status, headers, body
        return None

    def transport_fault(self, request: Request) -> str | None:
        """What the HTTP layer does instead of answering normally: drop, html, slow or None."""
        key = _key(request)
        for kind, rate in (
            ("drop", self.faults.drop_rate),
            ("html", self.faults.html_rate),
            ("slow", self.faults.slow_rate),
        ):
            if self.dice.roll(kind, key, rate):
                return kind
        return None

    def _usage(self, ig_user_id: str, regain_seconds: float = 0.0) -> dict[str, str]:
        now = self.world.clock()
        hour = int(now.timestamp() // 3600)
        with self._lock:
            self._calls[(ig_user_id, hour)] += 1
            used = self._calls[(ig_user_id, hour)]
            total = sum(n for (_, h), n in self._calls.items() if h == hour)
        percent = min(100, used * 100 // max(self.hourly_call_budget, 1))
        percent = 100 if regain_seconds else max(percent, int(self.faults.usage_percent))
        buc = {
            ig_user_id: [
                {
                    "type": "instagram",
                    "call_count": percent,
                    "total_cputime": max(percent // 3, 0),
                    "total_time": max(percent // 2, 0),
                    "estimated_time_to_regain_access": round(regain_seconds / 60, 4),
                }
            ]
        }
        app = {
            "call_count": min(100, total * 100 // (self.hourly_call_budget * 10)),
            "total_time": 1,
            "total_cputime": 1,
        }
        return {
            "X-Business-Use-Case-Usage": json.dumps(buc, separators=(",", ":")),
            "X-App-Usage": json.dumps(app, separators=(",", ":")),
        }

    def _count(self, route: str, account: str) -> None:
        with self._lock:
            self.stats.by_route[route] += 1
            self.stats.by_account[account] += 1

    # -- routes -------------------------------------------------------------------------------

    def _stories(self, request: Request, match: re.Match[str]) -> Response:
        ig_user_id = match["user"]
        account = self.world.account_for(ig_user_id)
        denied = self._authorize(request, account)
        if denied:
            return denied
        if account is None:
            return graph_error(
                400,
                f"Unsupported get request. Object with ID '{ig_user_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                100,
                subcode=33,
                kind="GraphMethodException",
            )
        self._count("stories", account)
        injected = self._injected(request, account, ig_user_id)
        if injected:
            return injected
        headers = self._usage(ig_user_id)
        try:
            limit = max(1, min(int(request.query.get("limit", DEFAULT_PAGE_SIZE)), 100))
            offset = int(base64.urlsafe_b64decode(request.query.get("after", "") + "==") or b"0")
        except ValueError:
            return graph_error(400, "(#100) Invalid cursor or limit", 100)
        limit = min(limit, self.page_size)
        stories = self.world.live_stories(account)
        page = stories[offset : offset + limit]
        fields = [f for f in request.query.get("fields", "id").split(",") if f]
        data = [{k: v for k, v in s.listing().items() if k in fields or k == "id"} for s in page]
        body: dict[str, Any] = {"data": data}
        if stories:
            body["paging"] = {
                "cursors": {"before": _cursor(offset), "after": _cursor(offset + len(page))}
            }
        if offset + limit < len(stories):
            params = dict(request.query)
            params.update(after=_cursor(offset + limit), limit=str(limit))
            params["access_token"] = request.token() or ""  # Meta repeats the token here
            body["paging"]["next"] = (
                f"https://graph.facebook.com{request.path}?{urlencode(params, safe=',')}"
            )
        return 200, headers, body

    def _insights(self, request: Request, match: re.Match[str]) -> Response:
        story = self.world.story(match["media"])
        denied = self._authorize(request, story.account if story else None)
        if denied:
            return denied
        now = self.world.clock()
        if story is None or not story.posted_at <= now < story.expires_at:
            return graph_error(
                400,
                f"Unsupported get request. Object with ID '{match['media']}' does not exist, cannot "
                "be loaded due to missing permissions, or does not support this operation.",
                100,
                subcode=33,
                kind="GraphMethodException",
            )
        self._count("insights", story.account)
        injected = self._injected(request, story.account, story.ig_user_id)
        if injected:
            return injected
        headers = self._usage(story.ig_user_id)
        if self.dice.roll("expire", story.id, self.faults.expire_rate, repeat=False):
            status, _, body = graph_error(
                400,
                f"Unsupported get request. Object with ID '{story.id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                100,
                subcode=33,
                kind="GraphMethodException",
            )
            return status, headers, body
        metrics = [m for m in request.query.get("metric", "").split(",") if m]
        invalid = self._validate(metrics, request.query.get("breakdown"))
        if invalid:
            return invalid[0], headers, invalid[2]
        values = story.metrics(now)
        if values["reach"] < VIEWER_THRESHOLD:
            status, _, body = graph_error(
                400, "(#10) Not enough viewers for the media to show insights", 10
            )
            return status, headers, body
        breakdown = request.query.get("breakdown")
        data = [self._metric(story.id, name, values, breakdown) for name in metrics]
        return 200, headers, {"data": data}

    def _validate(self, metrics: list[str], breakdown: str | None) -> Response | None:
        if not metrics:
            return graph_error(400, "(#100) The parameter metric is required", 100)
        for i, name in enumerate(metrics):
            if name in self.faults.rejected_metrics:
                return graph_error(
                    400,
                    f"(#100) The Media Insights API does not support the {name} metric for this "
                    "media product type.",
                    100,
                )
            if name in DEPRECATED:
                return graph_error(400, DEPRECATED[name], 100)
            if name in NOT_FOR_STORIES:
                return graph_error(
                    400,
                    f"(#100) The Media Insights API does not support the {name} metric for this "
                    "media product type.",
                    100,
                )
            if name not in STORY_METRICS:
                return graph_error(
                    400,
                    f"(#100) metric[{i}] must be one of the following values: "
                    + ", ".join(sorted(STORY_METRICS)),
                    100,
                )
        if breakdown is not None and (
            len(metrics) != 1 or BREAKDOWN_OF.get(metrics[0]) != breakdown
        ):
            return graph_error(500, "An unknown error has occurred.", 1)
        return None

    def _metric(
        self, story_id: str, name: str, values: Mapping[str, int], breakdown: str | None
    ) -> dict[str, Any]:
        total = values[name]
        item: dict[str, Any] = {
            "name": name,
            "period": "lifetime",
            "values": [{"value": total}],
            "title": name.replace("_", " ").capitalize(),
            "description": f"Simulated {name}.",
            "id": f"{story_id}/insights/{name}/lifetime",
        }
        if breakdown is not None:
            results = [
                {"dimension_values": [part], "value": values[PART_COLUMN[part]]}
                for part in BREAKDOWN_PARTS[name]
                if values[PART_COLUMN[part]] > 0  # Meta leaves zero parts out
            ]
            item["total_value"] = {
                "value": total,
                "breakdowns": [{"dimension_keys": [breakdown], "results": results}]
                if results
                else [],
            }
        elif self.total_value_shaped(story_id):
            del item["values"]
            item["total_value"] = {"value": total}
        return item

    def _batch(self, request: Request, _: re.Match[str]) -> Response:
        denied = self._authorize(request, None)
        if denied:
            return denied
        try:
            ops = json.loads(request.form.get("batch", ""))
        except ValueError:
            return graph_error(400, "(#100) The parameter batch must be a JSON array", 100)
        if not isinstance(ops, list) or not ops:
            return graph_error(400, "(#100) The parameter batch must be a JSON array", 100)
        if len(ops) > MAX_BATCH:
            return graph_error(
                400,
                "Too many requests in batch message. Maximum batch size is 50",
                1,
                kind="GraphBatchException",
            )
        with self._lock:
            self.stats.batches += 1
            self.stats.operations += len(ops)
        include_headers = request.form.get("include_headers", "true") != "false"
        answers = [self._operation(request, op, include_headers) for op in ops]
        return (
            200,
            {},
            [
                None if self.dice.roll("null", json.dumps(op), self.faults.null_rate) else answer
                for op, answer in zip(ops, answers, strict=True)
            ],
        )

    def _operation(self, outer: Request, op: object, include_headers: bool) -> dict[str, Any]:
        """One batch operation, answered through the same routes as a plain request."""
        if not isinstance(op, dict) or not isinstance(op.get("relative_url"), str):
            status, headers, body = graph_error(400, "(#100) Missing relative_url", 100)
        else:
            url = urlsplit("/" + op["relative_url"].lstrip("/"))
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            token = query.get("access_token") or outer.token()
            inner = Request(
                method=str(op.get("method", "GET")).upper(),
                path=url.path,
                query=query,
                form={},
                headers={"authorization": f"Bearer {token}"} if token else {},
            )
            status, headers, body = self.handle(inner, top_level=False)
        answer: dict[str, Any] = {"code": status, "body": json.dumps(body)}
        if include_headers:
            answer["headers"] = [
                {"name": "Content-Type", "value": "text/javascript; charset=UTF-8"},
                *({"name": k, "value": v} for k, v in headers.items()),
            ]
        return answer

    def total_value_shaped(self, story_id: str) -> bool:
        """Whether plain metrics of this story come as `total_value` only (shape "mixed": by hour)."""
        return self.shape == "total_value" or (
            self.shape == "mixed" and int(story_id) // 100 % 2 == 1
        )

    # -- ground truth for tests ------------------------------------------------------------------

    def truth(self, story_id: str, at: datetime | None = None) -> dict[str, int] | None:
        """The metric columns a perfect client would store for this story at `at` (default now)."""
        story = self.world.story(story_id)
        return None if story is None else story.metrics(at or self.world.clock())


def _key(request: Request) -> str:
    """A request's identity for the dice: method, path, query and form, without credentials."""
    query = sorted((k, v) for k, v in request.query.items() if k != "access_token")
    form = sorted((k, v) for k, v in request.form.items() if k != "access_token")
    return json.dumps([request.method, request.path, query, form])


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")
