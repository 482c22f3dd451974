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

import base64
import hashlib
import hmac
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

from ig_story_metrics.simulator.api import GraphSimulator, Handler, Request, Response, graph_error
from ig_story_metrics.simulator.server import SimulatorServer
from ig_story_metrics.simulator.world import World

INSTAGRAM_PREFIX = "/instagram"
# Instagram Login's demo token on the simulator's graph.instagram.com (reads any seed account).
DEFAULT_IG_TOKEN = "sim-ig-token"  # noqa: S105 - the simulator's well-known demo token
SIM_APP_ID = "1000000000000042"
SIM_USER_ID = "10200000000000001"
LONG_LIVED = timedelta(days=60)
DATA_ACCESS = timedelta(days=90)
IG_MIN_AGE = timedelta(hours=24)
FACEBOOK_ONLY_METRICS = frozenset({"link_clicks", "total_views"})
FACEBOOK_SCOPES = (
    "instagram_basic",
    "instagram_manage_insights",
    "pages_read_engagement",
    "pages_show_list",
    "public_profile",
)
INSTAGRAM_SCOPES = ("instagram_business_basic", "instagram_business_manage_insights")
_V = r"^/(?:v\d+\.\d+/)?"


@dataclass(frozen=True, slots=True)
class SimToken:
    """One token as Meta knows it. `kind`: USER, PAGE, SYSTEM_USER (Facebook) or INSTAGRAM."""

    kind: str
    accounts: frozenset[str] | None  # world account names it may read; None: all
    issued_at: datetime
    expires_at: datetime | None  # None: never
    data_access_expires_at: datetime | None
    scopes: tuple[str, ...]
    valid: bool = True

    @property
    def host(self) -> str:
        return "instagram" if self.kind == "INSTAGRAM" else "facebook"


@dataclass(frozen=True, slots=True)
class Caller:
    """The token a request came with, and what Meta knows about it."""

    token: str
    info: SimToken


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

    def _renew(self, old: str, info: SimToken, prefix: str) -> str:
        now = self.world.clock()
        with self._lock:
            n = len(self.tokens)
        new = prefix + hashlib.sha256(f"{old}:{n}".encode()).hexdigest()[:44]
        renewed = replace(info, issued_at=now, expires_at=now + LONG_LIVED)
        with self._lock:
            self.tokens[new] = renewed
            self.access[new] = info.accounts
        return new

    def _expired(self, info: SimToken) -> bool:
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
        if host == "instagram":
            routes: list[tuple[str, str, Handler]] = [
                ("GET", _V + r"me/?$", self._me_instagram),
                ("GET", _V + r"refresh_access_token/?$", self._refresh),
            ]
        else:
            routes = [
                ("GET", _V + r"me/accounts/?$", self._pages),
                ("GET", _V + r"me/?$", self._me_facebook),
                ("GET", _V + r"debug_token/?$", self._debug_token),
                ("GET", _V + r"oauth/access_token/?$", self._exchange),
                ("POST", _V + r"oauth/access_token/?$", self._exchange),
            ]
        simulator.routes[:0] = [(m, re.compile(p), h) for m, p, h in routes]
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
            if self._expired(info):
                return graph_error(400, self._expired_message(info), 190, subcode=463)
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

    def _expired_message(self, info: SimToken) -> str:
        assert info.expires_at is not None  # noqa: S101 - only called for expired tokens
        return (
            f"Error validating access token: Session has expired on "
            f"{info.expires_at:%A, %d-%b-%y %H:%M:%S} UTC. The current time is "
            f"{self.world.clock():%A, %d-%b-%y %H:%M:%S} UTC."
        )

    # -- routes ---------------------------------------------------------------------------------

    def _count(self, route: str) -> None:
        with self._lock:
            self.calls[route] += 1

    def _caller(self, request: Request) -> Caller | Response:
        token = request.token()
        if not token:
            return graph_error(
                400, "An active access token must be used to query information.", 2500
            )
        info = self.tokens.get(token)
        if info is None:
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        return Caller(token, info)

    def _username(self, account: str) -> str:
        return self.usernames.get(account, account.lower())

    def _pages(self, request: Request, _: re.Match[str]) -> Response:
        self._count("me/accounts")
        caller = self._caller(request)
        if not isinstance(caller, Caller):
            return caller
        token, info = caller.token, caller.info
        if info.kind == "PAGE":
            return graph_error(
                400, "(#100) Tried accessing nonexisting field (accounts) on node type (Page)", 100
            )
        pages = self._page_list(
            info.accounts, "instagram_business_account" in request.query.get("fields", "")
        )
        try:
            offset = int(base64.urlsafe_b64decode(request.query.get("after", "") + "==") or b"0")
            limit = max(1, min(int(request.query.get("limit", "25")), self.page_size))
        except ValueError:
            return graph_error(400, "(#100) Invalid cursor or limit", 100)
        body: dict[str, Any] = {"data": pages[offset : offset + limit]}
        after = _cursor(offset + limit)
        body["paging"] = {"cursors": {"before": _cursor(offset), "after": after}}
        if offset + limit < len(pages):
            query = {**request.query, "after": after, "access_token": token}
            body["paging"]["next"] = (
                f"https://graph.facebook.com{request.path}?{urlencode(query, safe=',{}')}"
            )
        return 200, {}, body

    def _page_list(self, accounts: frozenset[str] | None, with_ig: bool) -> list[dict[str, Any]]:
        pages: list[dict[str, Any]] = []
        for index, (name, ig_user_id) in enumerate(self.world.accounts.items(), start=1):
            if accounts is not None and name not in accounts:
                continue
            page: dict[str, Any] = {"name": f"{name} Page", "id": f"10{index:015d}"}
            if with_ig:
                page["instagram_business_account"] = {
                    "id": ig_user_id,
                    "username": self._username(name),
                }
            pages.append(page)
        for index, name in enumerate(self.pages_without_instagram, start=900):
            pages.append({"name": name, "id": f"10{index:015d}"})
        return pages

    def _me_facebook(self, request: Request, _: re.Match[str]) -> Response:
        self._count("me")
        caller = self._caller(request)
        if not isinstance(caller, Caller):
            return caller
        return 200, {}, {"id": SIM_USER_ID, "name": "Sim User"}

    def _me_instagram(self, request: Request, _: re.Match[str]) -> Response:
        self._count("me")
        caller = self._caller(request)
        if not isinstance(caller, Caller):
            return caller
        info = caller.info
        names = sorted(info.accounts or self.world.accounts)
        account = names[0]
        ig_user_id = self.world.accounts[account]
        full = {
            "id": "9" + ig_user_id[1:],
            "user_id": ig_user_id,
            "username": self._username(account),
        }
        fields = {f for f in request.query.get("fields", "id").split(",") if f} | {"id"}
        return 200, {}, {k: v for k, v in full.items() if k in fields}

    def _debug_token(self, request: Request, _: re.Match[str]) -> Response:
        self._count("debug_token")
        app_token = self.app_token()
        if app_token is None or not hmac.compare_digest(request.token() or "", app_token):
            return graph_error(400, "Invalid OAuth access token signature.", 190)
        info = self.tokens.get(request.query.get("input_token", ""))
        if info is None or info.host != "facebook":
            error = {
                "code": 190,
                "message": "Invalid OAuth access token - Cannot parse access token",
            }
            return 200, {}, {"data": {"error": error, "is_valid": False, "scopes": []}}
        return 200, {}, {"data": self._token_data(info)}

    def _token_data(self, info: SimToken) -> dict[str, Any]:
        def stamp(at: datetime | None) -> int:
            return 0 if at is None else int(at.timestamp())

        ig_ids = [
            uid
            for n, uid in self.world.accounts.items()
            if info.accounts in (None,) or n in (info.accounts or ())
        ]
        data: dict[str, Any] = {
            "app_id": self.app_id,
            "type": info.kind,
            "application": "Sim App",
            "data_access_expires_at": stamp(info.data_access_expires_at),
            "expires_at": stamp(info.expires_at),
            "is_valid": info.valid and not self._expired(info),
            "issued_at": stamp(info.issued_at),
            "scopes": list(info.scopes),
            "granular_scopes": [{"scope": s, "target_ids": ig_ids} for s in info.scopes[:2]],
            "user_id": SIM_USER_ID,
        }
        if self._expired(info):
            data["error"] = {"code": 190, "subcode": 463, "message": self._expired_message(info)}
        return data

    def _exchange(self, request: Request, _: re.Match[str]) -> Response:
        """`oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret&fb_exchange_token`
        (query or form): a new 60-day token of the same kind."""
        self._count("oauth/access_token")
        params = {**request.query, **request.form}
        if params.get("grant_type") != "fb_exchange_token":
            return graph_error(400, "(#100) Unsupported grant_type", 100)
        if params.get("client_id") != self.app_id:
            return graph_error(400, "Error validating application. Invalid application ID.", 101)
        secret = params.get("client_secret", "")
        if not self.app_secret or not hmac.compare_digest(secret, self.app_secret):
            return graph_error(400, "Error validating client secret.", 1)
        old = params.get("fb_exchange_token", "")
        info = self.tokens.get(old)
        if info is None or info.host != "facebook":
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        if self._expired(info) or not info.valid:
            return graph_error(
                400,
                self._expired_message(info)
                if self._expired(info)
                else "Error validating access token",
                190,
                subcode=463,
            )
        new = self._renew(old, info, "EAA")
        return (
            200,
            {},
            {
                "access_token": new,
                "token_type": "bearer",
                "expires_in": int(LONG_LIVED.total_seconds()),
            },
        )

    def _refresh(self, request: Request, _: re.Match[str]) -> Response:
        """`refresh_access_token?grant_type=ig_refresh_token`: a new 60-day Instagram token, for a
        long-lived token at least 24 hours old (the guard already refused expired ones)."""
        self._count("refresh_access_token")
        if request.query.get("grant_type") != "ig_refresh_token":
            return graph_error(400, "(#100) Unsupported grant_type", 100)
        caller = self._caller(request)
        if not isinstance(caller, Caller):
            return caller
        old, info = caller.token, caller.info
        if self.world.clock() - info.issued_at < IG_MIN_AGE:
            return graph_error(
                400, "(#100) The access token must be at least 24 hours old to be refreshed", 100
            )
        new = self._renew(old, info, "IGAA")
        return (
            200,
            {},
            {
                "access_token": new,
                "token_type": "bearer",
                "expires_in": int(LONG_LIVED.total_seconds()),
            },
        )


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


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
        shape=simulator.shape,
        faults=simulator.faults,
    )
    identity.install(simulator, "facebook")
    identity.install(twin, "instagram")
    return SimulatorServer(simulator, host=host, port=port, hosts={INSTAGRAM_PREFIX: twin})
