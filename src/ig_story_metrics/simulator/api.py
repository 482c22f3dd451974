"""The Graph API's rules, as a table of named routes over the simulated world.

`GraphSimulator.handle()` takes one request (method, path, query, form, headers) and returns
`(status, headers, body)`, exactly what the HTTP layer in `server.py` sends; batch operations go
through the same routes. Rules kept from the real API (see shared/graph-api.md):

- tokens in `Authorization: Bearer|OAuth`, `access_token` in the query or the POST body; an unknown
  token is `#190`, a token without access to the account is `#10` permission denied;
- `/{ig-user-id}/stories` ("stories") pages with `limit`/`after` and `paging.next` (which, like
  Meta's, repeats the access token: clients must strip it);
- `/{ig-media-id}/insights` ("insights") validates every metric (a deprecated or unknown one fails the
  whole call with `#100`), allows a breakdown only with its metric, and answers `(#10) Not enough
  viewers` while the story has fewer than 5 viewers; the answer's shape is `shapes.Shaper`'s;
- a batch ("batch") is a POST of at most 50 operations, each answered `{code, headers, body: "<json>"}`;
- every answer carries `X-App-Usage` and `X-Business-Use-Case-Usage`.

Tests change what a route answers through `override(name, fn)`, never by patching this class.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from ig_story_metrics.simulator import cdn, routes
from ig_story_metrics.simulator.faults import Dice, Faults
from ig_story_metrics.simulator.protocol import (
    Answer,
    Override,
    Request,
    Response,
    graph_error,
    lazy_request_key,
)
from ig_story_metrics.simulator.shapes import Shaper
from ig_story_metrics.simulator.world import World

DEFAULT_TOKEN = "sim-token"  # noqa: S105 - the simulator's well-known demo token, not a secret
DEFAULT_PAGE_SIZE = 25

Handler = Callable[["GraphSimulator", Request], Response]
# Runs before the routes (top_level: the HTTP request itself, not a batch operation); an answer
# refuses the request. `simulator/identity.py` guards tokens and appsecret_proof this way.
Guard = Callable[[Request, bool], Response | None]


@dataclass
class Stats:
    """What clients did: HTTP requests, batch operations and calls, by kind and account."""

    http_requests: int = 0
    batches: int = 0
    operations: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    tokens_in_urls: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler


ROUTES = (
    Route(
        "stories", "GET", re.compile(r"^/(?:v\d+\.\d+/)?(?P<user>\d+)/stories/?$"), routes.stories
    ),
    Route(
        "insights",
        "GET",
        re.compile(r"^/(?:v\d+\.\d+/)?(?P<media>\d+)/insights/?$"),
        routes.insights,
    ),
    Route("batch", "POST", re.compile(r"^/(?:v\d+\.\d+)?/?$"), routes.batch),
    # Story media on the CDN (signed, expiring links from the listing's media_url): not the Graph API
    Route(
        "cdn",
        "GET",
        re.compile(r"^/cdn/stories/(?P<media>\d+)\.(?P<kind>mp4|png|thumb\.png)$"),
        cdn.serve,
    ),
)
ROUTE_NAMES = tuple(r.name for r in ROUTES)


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
        self.stats = Stats()
        self.faults = faults or Faults()
        self.dice = Dice(self.faults)
        self.shaper = Shaper(self.faults, self.dice, shape)
        self.media_link_ttl = timedelta(hours=6)  # how long a listed media_url works (cdn.py)
        self.vanished: set[str] = set()  # stories deleted after they were listed (expire_rate)
        self._blocked_until: dict[str, float] = {}  # account -> time.monotonic() a burst ends
        self.lock = threading.Lock()
        self._calls: Counter[tuple[str, int]] = Counter()
        self._hour_calls: Counter[int] = Counter()  # every account's calls, by hour (app usage)
        self._overrides: dict[str, Override] = {}
        # The route table (`identity.py` puts the token routes of a host in front) and the guards.
        self.routes: list[Route] = list(ROUTES)
        self.guards: list[Guard] = []

    # -- entry point --------------------------------------------------------------------------

    def handle(self, request: Request, *, top_level: bool = True) -> Response:
        if top_level and not request.path.startswith("/cdn/"):  # the CDN is not the Graph API
            with self.lock:
                self.stats.http_requests += 1
                if "access_token=" in request.path or "access_token" in request.query:
                    self.stats.tokens_in_urls += 1
        for guard in self.guards:
            refused = guard(request, top_level)
            if refused is not None:
                return refused
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match and route.method == request.method:
                # a new Request, not dataclasses.replace (a fifth of the cost, once per operation)
                routed = Request(
                    request.method, request.path, request.query, request.form,
                    request.headers, match.groupdict(),
                )  # fmt: skip
                own: Answer = partial(route.handler, self, routed)
                override = self._overrides.get(route.name)
                return own() if override is None else override(routed, own)
        return graph_error(
            400, f"Unknown path components: {request.path}", 2500, kind="OAuthException"
        )

    def override(self, route: str, fn: Override) -> Callable[[], None]:
        """Replace or wrap what the named route ("stories", "insights", "batch") answers.

        `fn(request, answer)` gets the request and `answer()`, which gives the simulator's own
        response; it returns the response to send (its own, `answer()`'s, or a changed copy).
        Operations inside a batch go through their routes' overrides too. Returns a function
        that removes the override.
        """
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTE_NAMES)}")
        with self.lock:
            self._overrides[route] = fn

        def remove() -> None:
            with self.lock:
                self._overrides.pop(route, None)

        return remove

    def total_value_shaped(self, story_id: str) -> bool:
        """Whether plain metrics of this story come as `total_value` only."""
        return self.shaper.total_value_shaped(story_id)

    # -- access -------------------------------------------------------------------------------

    def authorize(self, request: Request, account: str | None) -> Response | None:
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

    def injected(self, request: Request, account: str, ig_user_id: str) -> Response | None:
        """A throttling burst or a transient error, when the dice say so."""
        key = lazy_request_key(request)  # made if a rate asks for it
        now = time.monotonic()
        with self.lock:
            blocked = self._blocked_until.get(account, 0.0) - now
        if blocked <= 0 and self.dice.roll("throttle", key, self.faults.throttle_rate):
            blocked = self.faults.throttle_seconds
            with self.lock:
                self._blocked_until[account] = now + blocked
        if blocked > 0:
            status, _, body = graph_error(
                400, "(#80002) There have been too many calls to this Instagram account.", 80002
            )
            return status, self.usage(ig_user_id, regain_seconds=blocked), body
        if self.dice.roll("transient", key, self.faults.transient_rate):
            if self.dice.roll("transient-kind", key, 0.5):
                return graph_error(500, "An unknown error occurred", 1)
            status, headers, body = graph_error(503, "Service temporarily unavailable", 2)
            body["error"]["is_transient"] = True
            return status, headers, body
        return None

    def transport_fault(self, request: Request) -> str | None:
        """What the HTTP layer does instead of answering normally: drop, html, slow, gzip or None."""
        key = lazy_request_key(request)
        for kind, rate in (
            ("drop", self.faults.drop_rate),
            ("html", self.faults.html_rate),
            ("slow", self.faults.slow_rate),
            ("gzip", self.faults.corrupt_gzip_rate),
        ):
            if self.dice.roll(kind, key, rate):
                return kind
        return None

    def usage(self, ig_user_id: str, regain_seconds: float = 0.0) -> dict[str, str]:
        now = self.world.clock()
        hour = int(now.timestamp() // 3600)
        with self.lock:
            self._calls[(ig_user_id, hour)] += 1
            self._hour_calls[hour] += 1
            used = self._calls[(ig_user_id, hour)]
            total = self._hour_calls[hour]
        percent = min(100, used * 100 // max(self.hourly_call_budget, 1))
        users = max(10, len(self.world.accounts))  # Meta's app limit grows with its users
        percent = 100 if regain_seconds else max(percent, int(self.faults.usage_percent))
        app = min(100, total * 100 // (self.hourly_call_budget * users))
        return dict(_usage_headers(ig_user_id, percent, round(regain_seconds / 60, 4), app))

    def count(self, route: str, account: str) -> None:
        with self.lock:
            self.stats.by_route[route] += 1
            self.stats.by_account[account] += 1

    # -- ground truth for tests ------------------------------------------------------------------

    def truth(self, story_id: str, at: datetime | None = None) -> dict[str, int] | None:
        """The metric columns a perfect client would store for this story at `at` (default now)."""
        story = self.world.story(story_id)
        return None if story is None else story.metrics(at or self.world.clock())

    def extra_truth(self, story_id: str, at: datetime | None = None) -> dict[str, int] | None:
        """The opt-in metrics (`IG_EXTRA_METRICS`) the story has at `at`; a metric it lacks
        (`facebook_views` of a story not shared to Facebook) is absent."""
        story = self.world.story(story_id)
        return None if story is None else story.extra_metrics(at or self.world.clock())


@functools.lru_cache(maxsize=4096)
def _usage_headers(
    ig_user_id: str, percent: int, regain_minutes: float, app_percent: int
) -> tuple[tuple[str, str], ...]:
    """The usage headers of one answer (the same few values over and over: encoded once each)."""
    buc = {
        ig_user_id: [
            {
                "type": "instagram",
                "call_count": percent,
                "total_cputime": max(percent // 3, 0),
                "total_time": max(percent // 2, 0),
                "estimated_time_to_regain_access": regain_minutes,
            }
        ]
    }
    app = {"call_count": app_percent, "total_time": 1, "total_cputime": 1}
    return (
        ("X-Business-Use-Case-Usage", json.dumps(buc, separators=(",", ":"))),
        ("X-App-Usage", json.dumps(app, separators=(",", ":"))),
    )
