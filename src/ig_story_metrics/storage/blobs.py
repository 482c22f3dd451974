"""Single objects in the lake, outside the declared tables: the published report (replaced on each
publish) and write-once objects (the `write_once` disposition): webhook deliveries, stored under a
key named after their own hash, and archived story media. An object that exists is never rewritten.

    put(lake, key, data, content_type)              write or replace the object
    write_once(lake, key, data, content_type)       True if written now, False if it was there
    put_once(backend, key, data)                    the same, on a backend
    exists(lake, key) / get(backend, key)           is it there / its bytes

Write-once creation:
- local folder: the bytes go to a temp file (fsynced), then `os.link` gives it the final name, which
  fails if that name exists: no reader ever sees a partial object, and a concurrent writer of the
  same key loses cleanly;
- GCS: one upload with `if_generation_match=0` (create only); a 412 means it already exists.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from ig_story_metrics.clock import Deadline
from ig_story_metrics.storage.backend import Backend, ConflictError, StorageError
from ig_story_metrics.storage.lake import Lake
from ig_story_metrics.storage.local import LocalBackend


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
    if isinstance(backend, LocalBackend):
        return _create_local(backend.root / key, data)
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


def _create_local(path: Path, data: bytes | BinaryIO) -> bool:
    try:
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes):
                    handle.write(data)
                else:
                    data.seek(0)
                    shutil.copyfileobj(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # exclusive: fails when the name exists
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
