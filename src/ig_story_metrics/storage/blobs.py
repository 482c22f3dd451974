"""Single objects in the lake, outside the declared tables: the published report (replaced on
each publish) and write-once objects such as archived story media (never rewritten once there).

    put(lake, key, data, content_type)          write or replace the object
    write_once(lake, key, data, content_type)   True if written, False if it already existed
    exists(lake, key)                           whether the object is there

Both writes are atomic (local: temp file + rename; GCS: one upload with a generation precondition,
0 for "must not exist", so two writers of the same write-once object cannot both land).
"""

from __future__ import annotations

from typing import BinaryIO

from ig_story_metrics.clock import Deadline
from ig_story_metrics.storage.backend import ConflictError
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
    try:
        lake.backend.write(key, data, if_generation=0, deadline=deadline, content_type=content_type)
    except ConflictError:
        return False  # another writer got there first: its object stays
    return True


def exists(lake: Lake, key: str, *, deadline: Deadline | None = None) -> bool:
    """Whether an object is stored at `key` (a listing of its folder: the object is not read)."""
    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    return key in lake.backend.keys(folder, deadline=deadline)
