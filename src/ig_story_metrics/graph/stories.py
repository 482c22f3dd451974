"""Listing an account's live stories: `GET /{ig-user-id}/stories`, every page.

Every story the listing shows gets exactly one row: a story on two pages is kept once; a story
without a valid timestamp is kept (its row says `error`); a page that fails after others were read
keeps the stories already listed and reports why the listing stopped (`Listing.error`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlencode

from ig_story_metrics.graph.client import Exchange, GraphClient, Session
from ig_story_metrics.graph.errors import (
    AccountFatal,
    BadResponse,
    GraphError,
    UnsupportedRequest,
)
from ig_story_metrics.graph.paging import Pager
from ig_story_metrics.graph.usage import parse_usage
from ig_story_metrics.model.story import Story, parse_timestamp

PAGE_LIMIT = 50
STORY_FIELDS = (
    "id,media_type,media_product_type,permalink,caption,timestamp,media_url,thumbnail_url"
)


@dataclass(slots=True)
class Listing:
    """The live stories of an account, what had to be skipped, and why the listing stopped early."""

    stories: list[Story] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pages: int = 0
    error: GraphError | None = None


async def list_stories(client: GraphClient, session: Session) -> Listing:
    """Every live story of the account, following `paging.next` until it is absent.

    A failure on the first page raises (there is nothing to keep); a later one ends the listing
    with the stories read so far and `error` set.
    """
    query = urlencode({"fields": STORY_FIELDS, "limit": PAGE_LIMIT}, safe=",")
    pager = Pager(f"{client.version}/{session.ig_user_id}/stories?{query}")
    listing = Listing()
    seen: set[str] = set()
    while True:
        try:
            path = pager.next_path()
            if path is None:
                break
            body = await _page(client, session, path)
        except GraphError as exc:
            if pager.pages == 0:
                raise _first_page(exc) from None
            listing.error = _stopped(exc, pager.pages)
            break
        assert isinstance(body, dict)  # noqa: S101 - guaranteed by _check
        pager.advance(body)
        listing.pages = pager.pages
        for item in body["data"]:
            story = parse_story(item)
            if not isinstance(story, Story):
                listing.skipped.append(story)
            elif story.id not in seen:  # a story on two pages is one story
                seen.add(story.id)
                listing.stories.append(story)
    return listing


async def _page(client: GraphClient, session: Session, path: str) -> object:
    """One page, retried until usable. While batches work, a page of our own making (the first)
    is an operation of a shared batch: the listings of the accounts of one token go in one POST
    (a thousand accounts: 20 requests, not 1,000). Pages from `paging.next` are plain GETs."""
    relative = path.removeprefix(f"{client.version}/")
    if client.batch_refused is None and relative != path:
        send = partial(_operation, client, session, relative)
        return await client.retrying(session, send, _check, final=(UnsupportedRequest,))
    get = partial(client.get, session, path)
    return await client.exchange(session, get, _check, final=(UnsupportedRequest,))


async def _operation(client: GraphClient, session: Session, relative_url: str) -> Exchange:
    """The answer of one batch operation, as if it were the answer of a GET. A batch POST that
    failed as a whole (after the client's retries) raises its error."""
    [answer] = await client.batch(session, [relative_url], pack=True)
    if answer.error is not None:  # the slot did not finish, or (batches refused) the GET failed
        raise answer.error
    # the account's usage, as the GET's headers said it: it paces the insights calls that follow
    client.note_usage(session, parse_usage(answer.headers))
    return answer


def _first_page(error: GraphError) -> GraphError:
    if isinstance(error, UnsupportedRequest):  # 100/33 on the account itself: unknown or invisible
        return AccountFatal(error.message, code=error.code, subcode=error.subcode)
    return error


def _stopped(error: GraphError, pages: int) -> GraphError:
    """The same kind of error, saying that the stories of the pages read were kept."""
    return type(error)(
        f"the listing stopped after {pages} page(s), whose stories were captured: {error.message}",
        code=error.code,
        subcode=error.subcode,
        http_status=error.http_status,
        fbtrace_id=error.fbtrace_id,
    )


def _check(body: object) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadResponse("stories listing without a data list")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: object) -> str | None:
    """A string field as text Parquet can hold (a lone surrogate becomes U+FFFD)."""
    if not isinstance(value, str):
        return None
    return _SURROGATE.sub("\ufffd", value)


def parse_story(item: object) -> Story | str:
    """A listed story, or why the item cannot be one (an item without a usable id)."""
    if not isinstance(item, dict):
        return "a listing item that is not an object"
    story_id = item.get("id")
    if isinstance(story_id, int) and not isinstance(story_id, bool):
        story_id = str(story_id)
    if not isinstance(story_id, str) or not (story_id.isascii() and story_id.isdigit()):
        return "a listed story without a valid id"
    stamp = item.get("timestamp")
    problem = None
    try:
        posted_at = parse_timestamp(stamp) if isinstance(stamp, str) else None
    except ValueError:
        posted_at = None
    if posted_at is None:
        shown = _text(repr(stamp)[:60]) if "timestamp" in item else "none"
        problem = f"listed without a valid timestamp ({shown}): posted_at and expires_at unknown"
    return Story(
        id=story_id,
        posted_at=posted_at,
        media_type=_text(item.get("media_type")),
        media_product_type=_text(item.get("media_product_type")),
        permalink=_text(item.get("permalink")),
        caption=_text(item.get("caption")),
        problem=problem,
        media_url=_link(item.get("media_url")),
        thumbnail_url=_link(item.get("thumbnail_url")),
    )


def _link(value: object) -> str | None:
    """A CDN link to download from: an http(s) URL, else None (never shown: it is signed)."""
    if isinstance(value, str) and value.startswith(("https://", "http://")) and value.isascii():
        return value
    return None
