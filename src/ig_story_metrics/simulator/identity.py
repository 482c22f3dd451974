"""Meta's side of tokens and accounts, for the simulator: who a token is, until when, for what.

`Identity` keeps the tokens (kind, accounts, expiry, data access, scopes) and the Meta app (id,
secret). `Identity.install(simulator, host)` registers its routes in a `GraphSimulator`'s route table
and its guard in the simulator's guards, for one of the two hosts:

| host      | routes                                                                       |
| --------- | ---------------------------------------------------------------------------- |
| facebook  | `GET /me`, `GET /me/accounts` (paged), `GET /debug_token` (app token only),   |
|           | `GET|POST /oauth/access_token` (grant_type=fb_exchange_token)                 |
| instagram | `GET /me` (user_id, username), `GET /refresh_access_token` (ig_refresh_token) |

The guard runs before every route (batch operations included):
- with an app secret: a wrong `appsecret_proof` is refused (#100), and so is a missing one when
  `require_proof` (Meta's "Require App Secret");
- a token of the other host's kind: 190 "Invalid OAuth access token - Cannot parse access token";
- an expired token: 190/463 "Session has expired on ..."; an invalidated one: 190/460;
- graph.instagram.com refuses the metrics that exist only with Facebook Login (#100).

`both_hosts()` serves the two hosts from one loopback server: graph.facebook.com at the root and
graph.instagram.com under `/instagram` (so `IG_INSTAGRAM_API_URL=<url>/instagram`), over one world.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from functools import partial

from ig_story_metrics.simulator.api import GraphSimulator, Handler, Route
from ig_story_metrics.simulator.identity_routes import Routes
from ig_story_metrics.simulator.protocol import Request, Response, graph_error
from ig_story_metrics.simulator.server import SimulatorServer
from ig_story_metrics.simulator.tokens import (
    DATA_ACCESS,
    DEFAULT_IG_TOKEN,
    FACEBOOK_ONLY_METRICS,
    FACEBOOK_SCOPES,
    INSTAGRAM_PREFIX,
    INSTAGRAM_SCOPES,
    LONG_LIVED,
    SIM_APP_ID,
    Caller,
    SimToken,
)
from ig_story_metrics.simulator.world import World

__all__ = ["DEFAULT_IG_TOKEN", "INSTAGRAM_PREFIX", "Identity", "both_hosts"]
_V = r"^/(?:v\d+\.\d+/)?"


class Identity:
    """The tokens and the app of a simulated Meta; shared by both hosts, thread-safe."""

    def __init__(
        self,
        world: World,
        *,
        app_id: str = SIM_APP_ID,
        app_secret: str | None = None,
        require_proof: bool = True,
        usernames: Mapping[str, str] | None = None,
        pages_without_instagram: tuple[str, ...] = ("Sim Shop (no Instagram)",),
        page_size: int = 2,
    ) -> None:
        self.world = world
        self.app_id = app_id
        self.app_secret = app_secret
        self.require_proof = require_proof
        self.usernames = dict(usernames or {})
        self.pages_without_instagram = pages_without_instagram
        self.page_size = page_size
        self.tokens: dict[str, SimToken] = {}
        self.access: dict[str, frozenset[str] | None] = {}  # what the routes' _authorize reads
        self.calls: Counter[str] = Counter()  # identity routes, and proofs checked
        self._lock = threading.Lock()

    # -- tokens ---------------------------------------------------------------------------------

    def issue(
        self,
        token: str,
        *,
        kind: str = "SYSTEM_USER",
        accounts: frozenset[str] | None = None,
        expires_in: timedelta | None = None,
        data_access_in: timedelta | None = DATA_ACCESS,
        scopes: tuple[str, ...] | None = None,
        age: timedelta = timedelta(days=2),
        valid: bool = True,
    ) -> str:
        """Make `token` known: `expires_in` None never expires; `age` is how long ago it was issued."""
        now = self.world.clock()
        default = INSTAGRAM_SCOPES if kind == "INSTAGRAM" else FACEBOOK_SCOPES
        info = SimToken(
            kind=kind,
            accounts=accounts,
            issued_at=now - age,
            expires_at=None if expires_in is None else now + expires_in,
            data_access_expires_at=None if data_access_in is None else now + data_access_in,
            scopes=default if scopes is None else scopes,
            valid=valid,
        )
        with self._lock:
            self.tokens[token] = info
            self.access[token] = accounts
        return token

    def renew(self, old: str, info: SimToken, prefix: str) -> str:
        now = self.world.clock()
        with self._lock:
            n = len(self.tokens)
        new = prefix + hashlib.sha256(f"{old}:{n}".encode()).hexdigest()[:44]
        renewed = replace(info, issued_at=now, expires_at=now + LONG_LIVED)
        with self._lock:
            self.tokens[new] = renewed
            self.access[new] = info.accounts
        return new

    def expired(self, info: SimToken) -> bool:
        return info.expires_at is not None and info.expires_at <= self.world.clock()

    def app_token(self) -> str | None:
        return f"{self.app_id}|{self.app_secret}" if self.app_secret else None

    # -- installing into a host -----------------------------------------------------------------

    def install(self, simulator: GraphSimulator, host: str) -> None:
        """Serve this identity's routes and guard on `simulator`, as the `host` login's host."""
        kind = "INSTAGRAM" if host == "instagram" else "SYSTEM_USER"
        for token, allowed in simulator.tokens.items():
            if token not in self.tokens:
                self.issue(token, kind=kind, accounts=allowed, data_access_in=None)
        app = self.app_token()
        if app is not None:  # the app token may call the Graph API (a batch of debug_token), and
            self.access[app] = frozenset()  # read no account
        simulator.tokens = self.access
        handlers = Routes(self)
        if host == "instagram":
            routes: list[tuple[str, str, str, Handler]] = [
                ("me", "GET", _V + r"me/?$", handlers.me_instagram),
                ("refresh_access_token", "GET", _V + r"refresh_access_token/?$", handlers.refresh),
            ]
        else:
            routes = [
                ("me/accounts", "GET", _V + r"me/accounts/?$", handlers.pages),
                ("me", "GET", _V + r"me/?$", handlers.me_facebook),
                ("debug_token", "GET", _V + r"debug_token/?$", handlers.debug_token),
                ("oauth/access_token", "GET", _V + r"oauth/access_token/?$", handlers.exchange),
                ("oauth/access_token", "POST", _V + r"oauth/access_token/?$", handlers.exchange),
            ]
        simulator.routes[:0] = [Route(n, m, re.compile(p), h) for n, m, p, h in routes]
        simulator.guards.append(partial(self.guard, host))

    # -- the guard ------------------------------------------------------------------------------

    def guard(self, host: str, request: Request, top_level: bool) -> Response | None:
        """Refuse what Meta refuses before any route answers (see the module docstring)."""
        token = request.token()
        if top_level and self.app_secret and token:
            refused = self._check_proof(request, token)
            if refused:
                return refused
        info = self.tokens.get(token or "")
        if info is not None:
            if info.host != host:
                return graph_error(
                    400, "Invalid OAuth access token - Cannot parse access token", 190
                )
            if not info.valid:
                return graph_error(
                    400,
                    "Error validating access token: The session has been invalidated because the "
                    "user changed their password or Facebook has changed the session for security "
                    "reasons.",
                    190,
                    subcode=460,
                )
            if self.expired(info):
                return graph_error(400, self.expired_message(info), 190, subcode=463)
        if host == "instagram" and request.path.rstrip("/").endswith("/insights"):
            asked = set(request.query.get("metric", "").split(","))
            for name in sorted(asked & FACEBOOK_ONLY_METRICS):
                return graph_error(
                    400,
                    f"(#100) The Media Insights API does not support the {name} metric for this "
                    "media product type.",
                    100,
                )
        return None

    def _check_proof(self, request: Request, token: str) -> Response | None:
        assert self.app_secret is not None  # noqa: S101 - checked by the caller
        with self._lock:
            self.calls["proof_checked"] += 1
        proof = request.query.get("appsecret_proof") or request.form.get("appsecret_proof")
        if not proof:
            if not self.require_proof:
                return None
            return graph_error(
                400,
                "API calls from the server require an appsecret_proof argument",
                100,
                kind="GraphMethodException",
            )
        expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(proof, expected):
            return graph_error(
                400,
                "Invalid appsecret_proof provided in the API argument",
                100,
                kind="GraphMethodException",
            )
        return None

    def expired_message(self, info: SimToken) -> str:
        assert info.expires_at is not None  # noqa: S101 - only called for expired tokens
        return (
            f"Error validating access token: Session has expired on "
            f"{info.expires_at:%A, %d-%b-%y %H:%M:%S} UTC. The current time is "
            f"{self.world.clock():%A, %d-%b-%y %H:%M:%S} UTC."
        )

    # -- for the routes ---------------------------------------------------------------------------------

    def count(self, route: str) -> None:
        with self._lock:
            self.calls[route] += 1

    def caller(self, request: Request) -> Caller | Response:
        token = request.token()
        if not token:
            return graph_error(
                400, "An active access token must be used to query information.", 2500
            )
        info = self.tokens.get(token)
        if info is None:
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        return Caller(token, info)

    def username(self, account: str) -> str:
        return self.usernames.get(account, account.lower())


def both_hosts(
    simulator: GraphSimulator, identity: Identity, *, host: str = "127.0.0.1", port: int = 0
) -> SimulatorServer:
    """One server for both hosts over `simulator`'s world: graph.facebook.com at the root, and a
    twin configured as graph.instagram.com under INSTAGRAM_PREFIX (`server.hosts[...]`)."""
    twin = GraphSimulator(
        simulator.world,
        tokens=simulator.tokens,
        page_size=simulator.page_size,
        hourly_call_budget=simulator.hourly_call_budget,
        shape=simulator.shaper.shape,
        faults=simulator.faults,
    )
    identity.install(simulator, "facebook")
    identity.install(twin, "instagram")
    return SimulatorServer(simulator, host=host, port=port, hosts={INSTAGRAM_PREFIX: twin})
