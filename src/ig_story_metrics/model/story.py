"""A live story as the listing shows it, and Graph timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

STORY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Story:
    """A live story as listed by `GET /{ig-user-id}/stories`."""

    id: str
    posted_at: datetime
    media_type: str | None = None
    media_product_type: str | None = None
    permalink: str | None = None
    caption: str | None = None

    @property
    def expires_at(self) -> datetime:
        return self.posted_at + STORY_LIFETIME


def parse_timestamp(value: str) -> datetime:
    """Graph timestamps look like `2026-09-20T08:15:02+0000`; always returned in UTC.

    ValueError when `value` is not one, or when the story it dates could not expire: a timestamp
    so close to year 1 or 9999 that it, or 24 hours later, is outside what a datetime holds.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        utc = parsed.astimezone(UTC)
        _ = utc + STORY_LIFETIME  # the expiry must exist too
    except OverflowError:
        raise ValueError(f"timestamp {value!r} is out of range") from None
    return utc
