"""The CDN that serves story media: signed links that expire, as Meta's `media_url` does.

The listing's `media_url` (and a video's `thumbnail_url`) point here, on the host the request came
to: `/cdn/stories/{id}.{ext}?oe={expiry, hex unix seconds}&_nc_sig={signature}`. A link past its
expiry, or with a signature that does not match, is refused with 403 as Meta's CDN refuses it
("URL signature expired" / "Bad URL hash"); an unknown story is 404. An image is a small valid PNG
made here, in the story's own colour; a video is a short MP4-shaped body (an `ftyp` box and some
`mdat` bytes: enough for a content-type and size check, not meant to play). Links live
`sim.media_link_ttl` (tests shorten it, or make it negative to hand out expired links).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from datetime import datetime
from typing import TYPE_CHECKING

from ig_story_metrics.simulator.protocol import Request, Response
from ig_story_metrics.simulator.world import SimStory

if TYPE_CHECKING:
    from ig_story_metrics.simulator.api import GraphSimulator

SIGNING_KEY = b"sim-cdn-signing-key"
VIDEO_BYTES = 48 * 1024


def _signature(path: str, expiry: int) -> str:
    return hashlib.sha256(SIGNING_KEY + f"{path}:{expiry:X}".encode()).hexdigest()[:40]


def _link(request: Request, path: str, expires: datetime) -> str:
    host = request.headers.get("host", "127.0.0.1")
    expiry = int(expires.timestamp())
    return f"http://{host}{path}?oe={expiry:X}&_nc_sig={_signature(path, expiry)}"


def links(sim: GraphSimulator, story: SimStory, request: Request) -> dict[str, str]:
    """The story's `media_url` (and `thumbnail_url` for a video), valid for `media_link_ttl`."""
    expires = sim.world.clock() + sim.media_link_ttl
    ext = "mp4" if story.media_type == "VIDEO" else "png"
    found = {"media_url": _link(request, f"/cdn/stories/{story.id}.{ext}", expires)}
    if story.media_type == "VIDEO":
        found["thumbnail_url"] = _link(request, f"/cdn/stories/{story.id}.thumb.png", expires)
    return found


def serve(sim: GraphSimulator, request: Request) -> Response:
    """GET /cdn/stories/{id}.{ext}: the bytes, or Meta's CDN refusals."""
    try:
        expiry = int(request.query.get("oe", ""), 16)
    except ValueError:
        return _text(403, "Bad URL timestamp")
    if request.query.get("_nc_sig") != _signature(request.path, expiry):
        return _text(403, "Bad URL hash")
    if expiry < sim.world.clock().timestamp():
        return _text(403, "URL signature expired")
    story = sim.world.story(request.params["media"])
    if story is None:
        return _text(404, "Not Found")
    with sim.lock:
        sim.stats.by_route["cdn"] += 1
    if request.params["kind"] == "mp4":
        return 200, {"Content-Type": "video/mp4"}, video(story.id)
    return 200, {"Content-Type": "image/png"}, png(story.id)


def _text(status: int, message: str) -> Response:
    return status, {"Content-Type": "text/plain"}, message.encode()


def png(story_id: str, width: int = 90, height: int = 160) -> bytes:
    """A valid PNG, 9:16 like a story, filled with a colour made from the story's id."""
    digest = hashlib.sha256(story_id.encode()).digest()
    top, bottom = digest[:3], digest[3:6]
    rows = []
    for y in range(height):
        mix = y / (height - 1)
        pixel = bytes(round(a * (1 - mix) + b * mix) for a, b in zip(top, bottom, strict=True))
        rows.append(b"\x00" + pixel * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def video(story_id: str) -> bytes:
    """An MP4-shaped body: an `ftyp` box, then an `mdat` box of bytes made from the id."""
    ftyp = b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2mp41"
    seed = hashlib.sha256(story_id.encode()).digest()
    data = (seed * (VIDEO_BYTES // len(seed) + 1))[:VIDEO_BYTES]
    return (
        struct.pack(">I", 8 + len(ftyp)) + ftyp + struct.pack(">I", 8 + len(data)) + b"mdat" + data
    )
