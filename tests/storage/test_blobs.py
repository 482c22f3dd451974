"""Single objects outside the tables (storage/blobs.py), on the local folder and on a GCS bucket
(fake-gcs-server through the real client): a write-once object is never rewritten, a published
page replaces the earlier one, and a bucket serves each with the content type it was given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.blobs import exists, put, write_once
from ig_story_metrics.storage.gcs import GcsBackend
from ig_story_metrics.storage.local import LocalBackend
from tests.storage.writer import gcs_backend

KEY = "Instagram/NPI/media/stories/2026-11-24/1801.jpg"


@pytest.fixture(params=["local", "gcs"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    if request.param == "local":
        opened = Lake(LocalBackend(tmp_path / "lake"))
    else:
        opened = Lake(gcs_backend(request.getfixturevalue("bucket"), "bronze"))
    with opened:
        yield opened


def test_a_write_once_object_is_never_rewritten(lake: Lake) -> None:
    """The first write lands (True); a second with other bytes changes nothing (False)."""
    assert not exists(lake, KEY)
    assert write_once(lake, KEY, b"first", "image/jpeg") is True
    assert exists(lake, KEY)
    assert write_once(lake, KEY, b"second", "image/jpeg") is False
    assert lake.backend.read(KEY)[0] == b"first"


def test_put_replaces_the_object(lake: Lake) -> None:
    """A published page replaces the earlier one of the same day."""
    key = "reports/2026-11-24/report.html"
    put(lake, key, b"<p>one</p>", "text/html; charset=utf-8")
    put(lake, key, b"<p>two</p>", "text/html; charset=utf-8")
    assert lake.backend.read(key)[0] == b"<p>two</p>"


def test_a_bucket_serves_the_content_type_given(bucket: str) -> None:
    """On GCS the object carries the content type it was written with (not JSON by default)."""
    backend = gcs_backend(bucket)
    with Lake(backend) as lake:
        put(lake, "reports/2026-11-24/report.html", b"<p>x</p>", "text/html; charset=utf-8")
        write_once(lake, KEY, b"\xff\xd8\xff", "image/jpeg")
        assert isinstance(backend, GcsBackend)
        client = backend.client()
        page = client.bucket(bucket).get_blob("reports/2026-11-24/report.html")
        picture = client.bucket(bucket).get_blob(KEY)
    assert page.content_type.startswith("text/html")
    assert picture.content_type == "image/jpeg"


def test_a_large_file_is_written_from_its_file_byte_for_byte(lake: Lake, tmp_path: Path) -> None:
    """A file (a video spooled to disk) is written without being read whole first: past 8 MiB a
    bucket takes it in a resumable upload; it reads back identical, and only once."""
    body = bytes(range(256)) * (9 * 4096 + 7)  # just over 9 MiB
    with (tmp_path / "video.mp4").open("w+b") as handle:
        handle.write(body)
        handle.seek(123)  # wherever the file stands, it is read from its start
        key = KEY.replace(".jpg", ".mp4")
        assert write_once(lake, key, handle, "video/mp4") is True
        assert write_once(lake, key, handle, "video/mp4") is False
    assert lake.backend.read(key)[0] == body
