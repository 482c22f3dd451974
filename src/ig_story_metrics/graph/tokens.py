"""What Meta says about tokens, and renewing them (graph-api.md §6, §11).

    debug_tokens()       Facebook Login: `debug_token` for each token, signed with the app token
    probe_instagram()    Instagram Login: `GET /me?fields=user_id,username` (valid or not, whose)
    refresh_instagram()  Instagram Login: `GET /refresh_access_token?grant_type=ig_refresh_token`
    exchange_facebook()  Facebook Login: `POST /oauth/access_token` with grant_type=fb_exchange_token

No token is ever in a URL: `debug_token` operations travel in the body of a batch POST whose
`access_token` is the app token; the exchange's secrets travel in a POST body; the Instagram
token travels in the Authorization header. A new token is registered with `redact` before it can
reach any text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from pydantic import SecretStr

from ig_story_metrics.graph.client import MAX_BATCH, Exchange, GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, BadResponse, classify
from ig_story_metrics.model.numbers import as_int
from ig_story_metrics.model.tokens import TokenFacts
from ig_story_metrics.redact import register_secrets

NO_TOKEN = SecretStr("")


@dataclass(frozen=True, slots=True)
class NewToken:
    """A renewed token and how long Meta says it lasts."""

    token: SecretStr
    expires_in: int | None


def app_token(app_id: str, app_secret: SecretStr) -> SecretStr:
    return SecretStr(f"{app_id}|{app_secret.get_secret_value()}")


async def debug_tokens(
    client: GraphClient, app: SecretStr, tokens: Sequence[SecretStr]
) -> list[TokenFacts]:
    """`debug_token` for each token (Facebook Login), in batches; facts in the same order."""
    session = Session("debug_token", "", app)
    facts: list[TokenFacts] = []
    for start in range(0, len(tokens), MAX_BATCH):
        chunk = tokens[start : start + MAX_BATCH]
        urls = [f"debug_token?{urlencode({'input_token': t.get_secret_value()})}" for t in chunk]
        answers = await client.batch(session, urls)
        facts += [_debug_facts(answer) for answer in answers]
    return facts


def _stamp(value: object) -> datetime | None:
    """A debug_token time (Unix seconds; 0 or absent: none)."""
    seconds = as_int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _debug_facts(answer: Exchange) -> TokenFacts:
    error = classify(answer.status or 0, answer.body)
    if error is not None:
        return TokenFacts(valid=False, error=error.describe())
    data = answer.body.get("data") if isinstance(answer.body, dict) else None
    if not isinstance(data, dict):
        return TokenFacts(valid=False, error="debug_token answered without data")
    scopes = data.get("scopes")
    problem = data.get("error")
    message = problem.get("message") if isinstance(problem, dict) else None
    expires = as_int(data.get("expires_at"))
    return TokenFacts(
        valid=data.get("is_valid") is True,
        kind=str(data.get("type") or "unknown"),
        never_expires=expires == 0,
        expires_at=_stamp(expires),
        data_access_expires_at=_stamp(data.get("data_access_expires_at")),
        scopes=frozenset(s for s in scopes if isinstance(s, str))
        if isinstance(scopes, list)
        else frozenset(),
        error=str(message) if message else None,
        owner=str(data["user_id"]) if data.get("user_id") else None,
    )


async def probe_instagram(client: GraphClient, token: SecretStr) -> TokenFacts:
    """Whether an Instagram Login token works, and whose it is (Meta tells no expiry or scopes)."""
    try:
        body = await me(client, token, "user_id,username")
    except AccountFatal as exc:
        return TokenFacts(valid=False, kind="INSTAGRAM", error=exc.describe())
    owner = f"@{body.get('username')} ({body.get('user_id')})"
    return TokenFacts(valid=True, kind="INSTAGRAM", owner=owner)


async def me(client: GraphClient, token: SecretStr, fields: str) -> Mapping[str, Any]:
    """`GET /me?fields=...` with this token."""
    session = Session("me", "", token)
    path = f"{client.version}/me?{urlencode({'fields': fields}, safe=',')}"
    body = await client.exchange(session, partial(client.get, session, path), _object)
    assert isinstance(body, dict)  # noqa: S101 - guaranteed by _object
    return body


def _object(body: object) -> None:
    if not isinstance(body, dict):
        raise BadResponse("answer is not a JSON object")


def _new_token(body: object) -> None:
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise BadResponse("token renewal answered without a usable access_token")


def _taken(body: object) -> NewToken:
    assert isinstance(body, dict)  # noqa: S101 - guaranteed by _new_token
    token = str(body["access_token"])
    register_secrets([token])
    return NewToken(SecretStr(token), as_int(body.get("expires_in")))


async def refresh_instagram(client: GraphClient, token: SecretStr) -> NewToken:
    """A new 60-day Instagram Login token for a long-lived one at least 24 hours old."""
    session = Session("refresh", "", token)
    path = "refresh_access_token?grant_type=ig_refresh_token"
    body = await client.exchange(session, partial(client.get, session, path), _new_token)
    return _taken(body)


async def exchange_facebook(
    client: GraphClient,
    app_id: str,
    app_secret: SecretStr,
    token: SecretStr,
    *,
    system_user: bool = False,
) -> NewToken:
    """A new long-lived (60-day) token for a Facebook user or expiring system-user token."""
    form = {
        "grant_type": "fb_exchange_token",
        "client_id": app_id,
        "client_secret": app_secret.get_secret_value(),
        "fb_exchange_token": token.get_secret_value(),
    }
    if system_user:
        form["set_token_expires_in_60_days"] = "true"  # noqa: S105 - a flag, not a secret
    session = Session("exchange", "", NO_TOKEN)
    path = f"{client.version}/oauth/access_token"
    body = await client.exchange(session, partial(client.post, session, path, form), _new_token)
    return _taken(body)
