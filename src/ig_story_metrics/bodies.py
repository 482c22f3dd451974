"""The body of a request to a Cloud Function, read within a limit (the capture function and the
webhook receiver both take bodies from the open internet)."""

from __future__ import annotations

from typing import Protocol

from ig_story_metrics.errors import Refused


class _Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Request(Protocol):
    """What a flask request offers for its body (flask itself stays at the entry points)."""

    @property
    def content_length(self) -> int | None: ...

    @property
    def stream(self) -> _Stream: ...


def read_body(request: _Request, limit: int) -> bytes:
    """The raw body, at most `limit` bytes: 413 when Content-Length or the bytes sent say more,
    400 when the body cannot be read (a malformed chunked body, a client gone)."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"body of {request.content_length} bytes: the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = request.stream.read(limit + 1 - size)
        except Exception as exc:  # the request's fault, whatever the server's reader raises
            raise Refused(400, f"malformed request body ({type(exc).__name__})") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise Refused(413, f"body over {limit} bytes")
    return b"".join(chunks)
