"""Write-once objects (the `write_once` disposition): an object that exists is never written again.

Used for webhook deliveries, stored as they came under a key named after their own hash: a
redelivery of the same body finds its object and is a no-op, two different bodies never meet.

- local folder: the bytes go to a temp file (fsynced), then `os.link` gives it the final name, which
  fails if that name exists: no reader ever sees a partial object, and a concurrent writer of the
  same key loses cleanly;
- GCS: one upload with `if_generation_match=0` (create only); a 412 means it already exists.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ig_story_metrics.clock import Deadline
from ig_story_metrics.storage.backend import Backend, ConflictError, StorageError
from ig_story_metrics.storage.local import LocalBackend


def put_once(backend: Backend, key: str, data: bytes, *, deadline: Deadline | None = None) -> bool:
    """Create `key` with `data`; True when created now, False when it already existed.
    A `StorageError` when it could not be stored (the caller answers 5xx so Meta retries)."""
    if isinstance(backend, LocalBackend):
        return _create_local(backend.root / key, data)
    try:
        backend.write(key, data, if_generation=0, deadline=deadline)
    except ConflictError:
        return False
    return True


def get(backend: Backend, key: str) -> bytes | None:
    """The object's bytes, None when it does not exist."""
    data, _ = backend.read(key)
    return data


def _create_local(path: Path, data: bytes) -> bool:
    try:
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
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
