"""Single objects in the lake, outside the declared tables: the published report (replaced on each
publish) and write-once objects (the `write_once` disposition): webhook deliveries, stored under a
key named after their own hash, and archived story media. An object that exists is never rewritten.

    put(lake, key, data, content_type)              write or replace the object
    write_once(lake, key, data, content_type)       True if written now, False if it was there
    put_once(backend, key, data)                    the same, on a backend
    exists(lake, key) / get(backend, key)           is it there / its bytes

Write-once creation is a backend write with generation 0 ("must not exist"): on a local folder a
temp file linked to its name (`os.link` fails when the name exists), on GCS one upload with
`if_generation_match=0`; either way no reader sees a partial object and a concurrent writer of the
same key loses cleanly.
"""

from __future__ import annotations

from typing import BinaryIO

from ig_story_metrics.clock import Deadline
from ig_story_metrics.storage.backend import Backend, ConflictError
from ig_story_metrics.storage.lake import Lake


def put(
    lake: Lake, key: str, data: bytes, content_type: str, *, deadline: Deadline | None = None
) -> None:
    """Write `data` at `key`, replacing what is there (one retry after a concurrent writer)."""
    for attempt in range(2):
        _, generation = lake.backend.read(key, deadline=deadline)
        try:
            lake.backend.write(
                key, data, if_generation=generation, deadline=deadline, content_type=content_type
            )
        except ConflictError:
            if attempt:
                raise
        else:
            return


def write_once(
    lake: Lake,
    key: str,
    data: bytes | BinaryIO,
    content_type: str,
    *,
    deadline: Deadline | None = None,
) -> bool:
    """Write `data` (bytes, or a file read from its start) at `key` unless an object is there
    already: True when this call wrote it."""
    if exists(lake, key, deadline=deadline):
        return False
    return put_once(lake.backend, key, data, content_type=content_type, deadline=deadline)


def put_once(
    backend: Backend,
    key: str,
    data: bytes | BinaryIO,
    *,
    content_type: str | None = None,
    deadline: Deadline | None = None,
) -> bool:
    """Create `key` with `data`; True when created now, False when it already existed.
    A `StorageError` when it could not be stored (a webhook answers 5xx so Meta retries)."""
    try:
        backend.write(key, data, if_generation=0, deadline=deadline, content_type=content_type)
    except ConflictError:
        return False  # another writer got there first: its object stays
    return True


def exists(lake: Lake, key: str, *, deadline: Deadline | None = None) -> bool:
    """Whether an object is stored at `key` (a listing of its folder: the object is not read)."""
    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    return key in lake.backend.keys(folder, deadline=deadline)


def get(backend: Backend, key: str) -> bytes | None:
    """The object's bytes, None when it does not exist."""
    data, _ = backend.read(key)
    return data
