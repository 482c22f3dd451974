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
    """Graph timestamps look like `2026-09-20T08:15:02+0000`; always returned in UTC."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
