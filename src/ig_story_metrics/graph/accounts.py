"""The Instagram professional accounts a token can read (`accounts discover`).

Facebook Login: `GET /me/accounts?fields=name,instagram_business_account{id,username}`, every page
(Pages without an Instagram account carry no `instagram_business_account`). Instagram Login:
`GET /me?fields=user_id,username` (the token is one account's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlencode

from pydantic import SecretStr

from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import BadResponse
from ig_story_metrics.graph.paging import Pager
from ig_story_metrics.graph.tokens import me
from ig_story_metrics.model.accounts import IG_USER_ID
from ig_story_metrics.model.discovery import Found

PAGE_FIELDS = "name,instagram_business_account{id,username}"


@dataclass(slots=True)
class Discovery:
    """What a token can see: accounts, Pages without one, and items that could not be used."""

    accounts: list[Found] = field(default_factory=list)
    pages_without_instagram: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def facebook_accounts(client: GraphClient, token: SecretStr) -> Discovery:
    """Every Page of the token's user, following `paging.next` to the end."""
    session = Session("discover", "", token)
    query = urlencode({"fields": PAGE_FIELDS, "limit": 100}, safe=",{}")
    pager = Pager(f"{client.version}/me/accounts?{query}")
    found = Discovery()
    while (path := pager.next_path()) is not None:
        body = await client.exchange(session, partial(client.get, session, path), _check)
        assert isinstance(body, dict)  # noqa: S101 - guaranteed by _check
        pager.advance(body)
        for item in body["data"]:
            _take(item, found)
    return found


def _check(body: object) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadResponse("me/accounts answered without a data list")


def _take(item: object, found: Discovery) -> None:
    if not isinstance(item, dict):
        found.skipped.append("a Page that is not an object")
        return
    page = item.get("name") if isinstance(item.get("name"), str) else item.get("id")
    ig = item.get("instagram_business_account")
    if not isinstance(ig, dict):
        found.pages_without_instagram.append(str(page))
        return
    ig_id, username = ig.get("id"), ig.get("username")
    if not isinstance(ig_id, str) or not IG_USER_ID.fullmatch(ig_id):
        found.skipped.append(f"Page {page}: an Instagram account without a valid id")
        return
    found.accounts.append(Found(ig_id, username if isinstance(username, str) else None, str(page)))


async def instagram_account(client: GraphClient, token: SecretStr) -> Discovery:
    """The one account an Instagram Login token belongs to."""
    body = await me(client, token, "user_id,username")
    user_id, username = body.get("user_id"), body.get("username")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not IG_USER_ID.fullmatch(user_id):
        raise BadResponse("me answered without a valid user_id")
    return Discovery([Found(user_id, username if isinstance(username, str) else None)])
