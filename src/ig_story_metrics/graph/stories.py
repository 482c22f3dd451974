"""Listing an account's live stories: `GET /{ig-user-id}/stories`, every page."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlencode

from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, BadResponse, StoryExpired
from ig_story_metrics.graph.paging import Pager
from ig_story_metrics.model.story import Story, parse_timestamp

PAGE_LIMIT = 50
STORY_FIELDS = "id,media_type,media_product_type,permalink,caption,timestamp"


@dataclass(slots=True)
class Listing:
    """The live stories of an account, and what had to be skipped while reading them."""

    stories: list[Story] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pages: int = 0


async def list_stories(client: GraphClient, session: Session) -> Listing:
    """Every live story of the account, following `paging.next` until it is absent."""
    query = urlencode({"fields": STORY_FIELDS, "limit": PAGE_LIMIT}, safe=",")
    pager = Pager(f"{client.version}/{session.ig_user_id}/stories?{query}")
    listing = Listing()
    while (path := pager.next_path()) is not None:
        try:
            body = await client.exchange(session, partial(client.get, session, path), _check)
        except StoryExpired as exc:  # 100/33 on the account itself: unknown or invisible id
            raise AccountFatal(exc.message, code=exc.code, subcode=exc.subcode) from None
        assert isinstance(body, dict)  # noqa: S101 - guaranteed by _check
        pager.advance(body)
        listing.pages = pager.pages
        for item in body["data"]:
            story = parse_story(item)
            if isinstance(story, Story):
                listing.stories.append(story)
            else:
                listing.skipped.append(story)
    return listing


def _check(body: object) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadResponse("stories listing without a data list")


def parse_story(item: object) -> Story | str:
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
