"""The `Backend` protocol's contract, one test body for every backend: the local folder and a GCS
bucket (fake-gcs-server through the real google-cloud-storage client, under a prefix).

What `Lake` relies on: an absent object reads as (None, 0); a write names the generation it was
based on and either replaces the object whole or raises `ConflictError` changing nothing; every
write gives a new generation; `locked()` can be held around a read-merge-write; `close()` may be
called more than once. Backend-specific behaviour (flock, temp files, GCS retries) stays in
test_local.py and test_gcs.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ig_story_metrics.storage import Backend, ConflictError
from ig_story_metrics.storage.local import LocalBackend
from tests.storage.writer import gcs_backend

KEY = "Instagram/NPI/insights/stories/2026-11-24/contract.bin"
BLOB = bytes(range(256)) * 3  # every byte value: no text decoding on the way


Opener = Callable[[], Backend]


@pytest.fixture(params=["local", "gcs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a backend on one empty place, as the lake opens it: a folder, or a bucket's prefix."""
    if request.param == "local":
        return lambda: LocalBackend(tmp_path / "lake")
    bucket = request.getfixturevalue("bucket")
    return lambda: gcs_backend(bucket, "bronze")


@pytest.fixture
def backend(place: Opener) -> Iterator[Backend]:
    """A backend on that place, closed after the test."""
    opened = place()
    try:
        yield opened
    finally:
        opened.close()


def test_an_absent_object_reads_as_none_and_generation_zero(backend: Backend) -> None:
    """Reading a key never written gives (None, 0): "no file yet today", not an error."""
    assert backend.read(KEY) == (None, 0)


def test_a_write_on_generation_zero_creates_the_object_byte_for_byte(backend: Backend) -> None:
    """if_generation=0 creates the object; it reads back identical, with a generation above 0."""
    backend.write(KEY, BLOB, if_generation=0)
    data, generation = backend.read(KEY)
    assert data == BLOB
    assert generation > 0


def test_a_write_on_the_current_generation_replaces_it_with_a_new_generation(
    backend: Backend,
) -> None:
    """Writing on the generation just read replaces the whole object and moves the generation."""
    backend.write(KEY, b"one", if_generation=0)
    _, first = backend.read(KEY)
    backend.write(KEY, b"two", if_generation=first)
    data, second = backend.read(KEY)
    assert data == b"two"
    assert second not in (0, first)


@pytest.mark.parametrize("stale", ["outdated", "zero"])
def test_a_write_on_a_stale_generation_is_a_conflict_and_changes_nothing(
    backend: Backend, stale: str
) -> None:
    """A write based on an outdated read, or creating what exists, raises ConflictError; the
    object keeps its bytes and its generation."""
    backend.write(KEY, b"one", if_generation=0)
    _, first = backend.read(KEY)
    backend.write(KEY, b"two", if_generation=first)
    before = backend.read(KEY)
    with pytest.raises(ConflictError):
        backend.write(KEY, b"three", if_generation=first if stale == "outdated" else 0)
    assert backend.read(KEY) == before


def test_a_write_to_an_absent_object_on_a_nonzero_generation_is_a_conflict(
    backend: Backend,
) -> None:
    """A write that expects an object that is not there (deleted since it was read) conflicts."""
    backend.write(KEY, b"one", if_generation=0)
    _, generation = backend.read(KEY)
    with pytest.raises(ConflictError):
        backend.write(KEY.replace("contract", "other"), b"x", if_generation=generation)
    assert backend.read(KEY.replace("contract", "other")) == (None, 0)


def test_keys_are_independent_objects(backend: Backend) -> None:
    """Two keys in the same folder hold their own bytes and generations."""
    sibling = KEY.replace("contract.bin", "sibling.json")
    backend.write(KEY, b"parquet", if_generation=0)
    backend.write(sibling, b"{}", if_generation=0)
    assert backend.read(KEY)[0] == b"parquet"
    assert backend.read(sibling)[0] == b"{}"


def test_a_read_merge_write_can_run_under_the_lock(backend: Backend) -> None:
    """`locked(key)` is held around read-merge-write (Lake's append) and released after: the lock
    can be taken again, and the write inside it landed."""
    for round_ in range(2):
        with backend.locked(KEY):
            data, generation = backend.read(KEY)
            backend.write(KEY, (data or b"") + b"%d" % round_, if_generation=generation)
    assert backend.read(KEY)[0] == b"01"


def test_url_names_the_object(backend: Backend) -> None:
    """url(key) ends with the key, for messages and reports."""
    assert backend.url(KEY).endswith(KEY)


def test_what_was_written_outlives_close_and_close_is_idempotent(
    backend: Backend, place: Opener
) -> None:
    """close() twice is harmless, and another backend opened on the same place reads the object
    with the same generation."""
    backend.write(KEY, b"one", if_generation=0)
    written = backend.read(KEY)
    backend.close()
    backend.close()
    again = place()
    try:
        assert again.read(KEY) == written
    finally:
        again.close()


def test_keys_between_two_names_are_those_the_names_sort_between(backend: Backend) -> None:
    """`keys(prefix, start=, end=)` keeps the keys whose name below `prefix` sorts in
    [start, end): the same on a bucket (its list offsets) and a folder (which lists only the
    entries that can hold such keys). Day folders, a file at the top, nested folders, and a
    folder `a` whose keys `a/...` sort after `a-b` though `a` sorts before it."""
    prefix = "Instagram/NPI/webhooks/story_insights"
    names = [
        "2026-11-28/one.json",
        "2026-11-29/one.json",
        "2026-11-29/deep/two.json",
        "2026-11-30/one.json",
        "2026-12-01/one.json",
        "2026-11-30.json",
        "a/z.json",
        "a-b/y.json",
    ]
    for name in names:
        backend.write(f"{prefix}/{name}", b"{}", if_generation=0)
    backend.write("Instagram/NPI/webhooks/elsewhere/2026-11-29/x.json", b"{}", if_generation=0)
    for start, end in [
        ("2026-11-29", "2026-12-01"),
        ("2026-11-30", "2026-11-30/z"),
        ("2026-11-29/deep", None),
        (None, "2026-11-29"),
        ("a-b", "b"),
        ("2026-12-02", "2026-12-03"),
    ]:
        expected = sorted(
            f"{prefix}/{n}"
            for n in names
            if (start is None or n >= start) and (end is None or n < end)
        )
        assert backend.keys(prefix, start=start, end=end) == expected, (start, end)
    assert backend.keys(prefix) == sorted(f"{prefix}/{n}" for n in names)
