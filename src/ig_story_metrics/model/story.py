"""A live story as the listing shows it, and Graph timestamps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

STORY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Story:
    """A live story as listed by `GET /{ig-user-id}/stories`.

    `posted_at` is None only when the listing gave no usable timestamp; `problem` then says what
    it gave (the story still gets its row, with status `error`).

    `media_url` and `thumbnail_url` are Meta's signed CDN links: they are used once, to archive
    the media (jobs/archive.py), and never stored, logged or shown (left out of `repr`).
    """

    id: str
    posted_at: datetime | None
    media_type: str | None = None
    media_product_type: str | None = None
    permalink: str | None = None
    caption: str | None = None
    problem: str | None = None
    media_url: str | None = field(default=None, repr=False, compare=False)
    thumbnail_url: str | None = field(default=None, repr=False, compare=False)

    @property
    def expires_at(self) -> datetime | None:
        return None if self.posted_at is None else self.posted_at + STORY_LIFETIME


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


def oldest_first(stories: Iterable[Story]) -> list[Story]:
    """Stories by posting time, oldest (closest to expiry) first; those without a time last."""
    return sorted(stories, key=lambda s: (s.posted_at is None, s.posted_at or datetime.min))
