"""The routes of `Identity` (see `identity.py`): `/me/accounts`, `/me` on both hosts, `debug_token`,
`oauth/access_token` (fb_exchange_token) and `refresh_access_token` (ig_refresh_token)."""

from __future__ import annotations

import base64
import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ig_story_metrics.simulator.protocol import Request, Response, graph_error
from ig_story_metrics.simulator.tokens import IG_MIN_AGE, LONG_LIVED, SIM_USER_ID, Caller, SimToken

if TYPE_CHECKING:
    from ig_story_metrics.simulator.api import GraphSimulator
    from ig_story_metrics.simulator.identity import Identity


class Routes:
    """Route handlers over one `Identity` (its tokens, app and world)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def pages(self, _sim: GraphSimulator, request: Request) -> Response:
        self.identity.count("me/accounts")
        caller = self.identity.caller(request)
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
            limit = max(1, min(int(request.query.get("limit", "25")), self.identity.page_size))
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
        for index, (name, ig_user_id) in enumerate(self.identity.world.accounts.items(), start=1):
            if accounts is not None and name not in accounts:
                continue
            page: dict[str, Any] = {"name": f"{name} Page", "id": f"10{index:015d}"}
            if with_ig:
                page["instagram_business_account"] = {
                    "id": ig_user_id,
                    "username": self.identity.username(name),
                }
            pages.append(page)
        for index, name in enumerate(self.identity.pages_without_instagram, start=900):
            pages.append({"name": name, "id": f"10{index:015d}"})
        return pages

    def me_facebook(self, _sim: GraphSimulator, request: Request) -> Response:
        self.identity.count("me")
        caller = self.identity.caller(request)
        if not isinstance(caller, Caller):
            return caller
        return 200, {}, {"id": SIM_USER_ID, "name": "Sim User"}

    def me_instagram(self, _sim: GraphSimulator, request: Request) -> Response:
        self.identity.count("me")
        caller = self.identity.caller(request)
        if not isinstance(caller, Caller):
            return caller
        info = caller.info
        names = sorted(info.accounts or self.identity.world.accounts)
        account = names[0]
        ig_user_id = self.identity.world.accounts[account]
        full = {
            "id": "9" + ig_user_id[1:],
            "user_id": ig_user_id,
            "username": self.identity.username(account),
        }
        fields = {f for f in request.query.get("fields", "id").split(",") if f} | {"id"}
        return 200, {}, {k: v for k, v in full.items() if k in fields}

    def debug_token(self, _sim: GraphSimulator, request: Request) -> Response:
        self.identity.count("debug_token")
        app_token = self.identity.app_token()
        if app_token is None or not hmac.compare_digest(request.token() or "", app_token):
            return graph_error(400, "Invalid OAuth access token signature.", 190)
        info = self.identity.tokens.get(request.query.get("input_token", ""))
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
            for n, uid in self.identity.world.accounts.items()
            if info.accounts in (None,) or n in (info.accounts or ())
        ]
        data: dict[str, Any] = {
            "app_id": self.identity.app_id,
            "type": info.kind,
            "application": "Sim App",
            "data_access_expires_at": stamp(info.data_access_expires_at),
            "expires_at": stamp(info.expires_at),
            "is_valid": info.valid and not self.identity.expired(info),
            "issued_at": stamp(info.issued_at),
            "scopes": list(info.scopes),
            "granular_scopes": [{"scope": s, "target_ids": ig_ids} for s in info.scopes[:2]],
            "user_id": SIM_USER_ID,
        }
        if self.identity.expired(info):
            data["error"] = {
                "code": 190,
                "subcode": 463,
                "message": self.identity.expired_message(info),
            }
        return data

    def exchange(self, _sim: GraphSimulator, request: Request) -> Response:
        """`oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret&fb_exchange_token`
        (query or form): a new 60-day token of the same kind."""
        self.identity.count("oauth/access_token")
        params = {**request.query, **request.form}
        if params.get("grant_type") != "fb_exchange_token":
            return graph_error(400, "(#100) Unsupported grant_type", 100)
        if params.get("client_id") != self.identity.app_id:
            return graph_error(400, "Error validating application. Invalid application ID.", 101)
        secret = params.get("client_secret", "")
        if not self.identity.app_secret or not hmac.compare_digest(
            secret, self.identity.app_secret
        ):
            return graph_error(400, "Error validating client secret.", 1)
        old = params.get("fb_exchange_token", "")
        info = self.identity.tokens.get(old)
        if info is None or info.host != "facebook":
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        if self.identity.expired(info) or not info.valid:
            return graph_error(
                400,
                self.identity.expired_message(info)
                if self.identity.expired(info)
                else "Error validating access token",
                190,
                subcode=463,
            )
        new = self.identity.renew(old, info, "EAA")
        return (
            200,
            {},
            {
                "access_token": new,
                "token_type": "bearer",
                "expires_in": int(LONG_LIVED.total_seconds()),
            },
        )

    def refresh(self, _sim: GraphSimulator, request: Request) -> Response:
        """`refresh_access_token?grant_type=ig_refresh_token`: a new 60-day Instagram token, for a
        long-lived token at least 24 hours old (the guard already refused expired ones)."""
        self.identity.count("refresh_access_token")
        if request.query.get("grant_type") != "ig_refresh_token":
            return graph_error(400, "(#100) Unsupported grant_type", 100)
        caller = self.identity.caller(request)
        if not isinstance(caller, Caller):
            return caller
        old, info = caller.token, caller.info
        if self.identity.world.clock() - info.issued_at < IG_MIN_AGE:
            return graph_error(
                400, "(#100) The access token must be at least 24 hours old to be refreshed", 100
            )
        new = self.identity.renew(old, info, "IGAA")
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
