"""Downloading story media from Meta's CDN: the signed `media_url` / `thumbnail_url` links.

The CDN is not the Graph API: its own `httpx` client, no token, no usage headers, no Graph rate
limits; a bound on downloads in flight (`concurrency`) instead. Each download is streamed (to a
temporary file past a few MB, so a large video never sits whole in memory) and stopped as soon
as it passes `max_bytes` (a `Content-Length` above the cap is refused before any
byte is read), and only an image or video content type is taken; the extension comes from it.

A signed link is a credential of sorts and it expires: no message made here contains it. Every
failure is a `MediaError` whose text says what happened (HTTP status, type, size, the kind of
network error), never where.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from types import TracebackType
from typing import IO, BinaryIO, cast

import httpx

from ig_story_metrics.errors import IgStoryMetricsError

# Content types Instagram serves story media as, and the extension each is stored under.
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
}
MB = 1024 * 1024
SPOOL = 8 * MB  # a download larger than this goes to a temporary file, not memory


class MediaError(IgStoryMetricsError):
    """A download that did not give an archivable file; `expired` when the link has expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class Media:
    """A downloaded file: its body (in memory up to SPOOL bytes, then on the temporary disk),
    size, content type and the extension to store it under. Close it when stored."""

    body: BinaryIO
    size: int
    content_type: str
    extension: str

    def read(self) -> bytes:
        self.body.seek(0)
        return self.body.read()

    def close(self) -> None:
        self.body.close()


class MediaFetcher:
    """Downloads from the CDN, at most `concurrency` at a time, each at most `max_bytes`."""

    def __init__(
        self,
        *,
        max_bytes: int = 200 * MB,
        concurrency: int = 4,
        timeout_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self._gate = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout_seconds, follow_redirects=True
        )

    async def __aenter__(self) -> MediaFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> Media:
        """The file at `url`; `MediaError` for anything that is not an archivable file."""
        async with self._gate:
            try:
                return await self._fetch(url)
            except httpx.HTTPError as exc:  # its text may hold the URL: only the kind is said
                raise MediaError(f"download failed ({type(exc).__name__})") from None

    async def _fetch(self, url: str) -> Media:
        async with self._client.stream("GET", url) as response:
            _check_status(response)
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            extension = EXTENSIONS.get(kind)
            if extension is None:
                raise MediaError(f"content type {kind[:60] or 'none'!r} is not an image or video")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise MediaError(f"{_size(int(declared))} is larger than {_size(self.max_bytes)}")
            body = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - Media closes it
            try:
                size = await self._receive(response, body)
            except BaseException:
                body.close()
                raise
        return Media(cast(BinaryIO, body), size, kind, extension)

    async def _receive(self, response: httpx.Response, body: IO[bytes]) -> int:
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise MediaError(f"more than {_size(self.max_bytes)}: download stopped")
            body.write(chunk)
        if not size:
            raise MediaError("empty body")
        return size


def _check_status(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    if response.status_code in (403, 410):  # Meta's CDN: "URL signature expired"
        raise MediaError(f"the link has expired (HTTP {response.status_code})", expired=True)
    raise MediaError(f"HTTP {response.status_code}")


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n} bytes"
