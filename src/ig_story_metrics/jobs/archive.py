"""The media archive: each story's image or video, the first time a run sees it, into the lake.

    Instagram/{ACCOUNT}/media/stories/{date}/{story_id}.{ext}              the image or video
    Instagram/{ACCOUNT}/media/stories/{date}/{story_id}.thumbnail.{ext}    a video's thumbnail

`{date}` is the UTC day of the run that archived it; the extension comes from the content type.
Objects are write-once. What is archived is known from the lake itself (a listing of today's and
yesterday's folders: a live story was first seen on one of them), so a story archived by an earlier
run is not downloaded again, and one whose download failed is tried again by the next run, as long
as the story lives and its link works. A failure is reported (by story, with why) and never fails
the capture: the story's row is stored all the same, with `media_path` null.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from ig_story_metrics.clock import Deadline
from ig_story_metrics.errors import StorageError
from ig_story_metrics.graph.media import Media, MediaError, MediaFetcher
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.story import Story
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.blobs import write_once

log = logging.getLogger(__name__)
THUMBNAIL = ".thumbnail."


def media_folder(account: str, day: date) -> str:
    return f"Instagram/{account}/media/stories/{day.isoformat()}"


@dataclass(slots=True)
class Archived:
    """One account's media in one run: where each story's media is, what was written, what
    failed and why (by story id)."""

    paths: dict[str, str] = field(default_factory=dict)
    written: int = 0
    failed: dict[str, str] = field(default_factory=dict)


class Archive:
    """The archive step of one run (shared by its accounts; one fetcher, one bound)."""

    def __init__(
        self, lake: Lake, fetcher: MediaFetcher, now: datetime, deadline: Deadline | None = None
    ) -> None:
        self.lake = lake
        self.fetcher = fetcher
        self.day = now.date()
        self.deadline = deadline

    async def __call__(self, account: Account, stories: Sequence[Story]) -> Archived:
        """Archive the media of `stories` not archived yet; never raises."""
        done = Archived()
        try:
            done.paths = await asyncio.to_thread(self._known, account.name)
        except StorageError as exc:  # the lake cannot be listed: try again next run
            done.failed = {s.id: f"archive not listed: {exc}" for s in stories if s.media_url}
            return done
        todo = [s for s in stories if s.id not in done.paths]
        for story in todo:
            if not story.media_url:
                done.failed[story.id] = "the listing gave no media_url"
        tasks = {
            s.id: asyncio.ensure_future(self._one(account.name, s)) for s in todo if s.media_url
        }
        if tasks:  # downloads still running when the deadline comes are cut off
            left = None if self.deadline is None else max(self.deadline.remaining(), 0)
            await asyncio.wait(tasks.values(), timeout=left)
        for story_id, task in tasks.items():
            if not task.done():
                task.cancel()
                done.failed[story_id] = "not archived within the run's time budget"
            elif (error := task.exception()) is not None:
                done.failed[story_id] = _why(error)
            else:
                done.paths[story_id] = task.result()
                done.written += 1
        return done

    def _known(self, account: str) -> dict[str, str]:
        """Story id -> media key, for media archived today or yesterday."""
        found: dict[str, str] = {}
        for day in (self.day - timedelta(days=1), self.day):
            for key in self.lake.backend.keys(media_folder(account, day), deadline=self.deadline):
                name = key.rsplit("/", 1)[-1]
                if THUMBNAIL not in name and "." in name:
                    found[name.split(".", 1)[0]] = key
        return found

    async def _one(self, account: str, story: Story) -> str:
        """Download and store one story's media (and a video's thumbnail); the media's key."""
        assert story.media_url is not None  # noqa: S101 - filtered by the caller
        folder = media_folder(account, self.day)
        if story.thumbnail_url:  # before the media: a stored media means "done" to later runs
            await self._thumbnail(account, story.id, story.thumbnail_url, folder)
        media = await self.fetcher.fetch(story.media_url)
        return await self._store(media, f"{folder}/{story.id}.{media.extension}")

    async def _thumbnail(self, account: str, story_id: str, url: str, folder: str) -> None:
        """A video's thumbnail; a failure is logged (the video itself is what counts)."""
        try:
            thumb = await self.fetcher.fetch(url)
            await self._store(thumb, f"{folder}/{story_id}{THUMBNAIL}{thumb.extension}")
        except (MediaError, StorageError) as exc:
            log.warning(
                "%s: story %s: thumbnail not archived: %s",
                account,
                story_id,
                exc,
                extra={"event": "media_thumbnail_failed", "account": account},
            )

    async def _store(self, media: Media, key: str) -> str:
        try:
            await asyncio.to_thread(
                write_once, self.lake, key, media.body, media.content_type, deadline=self.deadline
            )
        finally:
            media.close()
        return key


def _why(exc: BaseException) -> str:
    if isinstance(exc, MediaError | StorageError):
        return str(exc)
    log.error("unexpected error archiving media", exc_info=exc, extra={"event": "media_crash"})
    return f"unexpected error ({type(exc).__name__}); see the log"
