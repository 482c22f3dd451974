"""The backend protocol: a place for objects with generations (a local folder, a GCS bucket).

Every call that can wait (a lock held by another writer, GCS retries) takes the run's `Deadline`
and gives up with a `StorageError` when it has passed; `None` means no limit (tests, tools).
"""

from __future__ import annotations

import contextlib
from typing import BinaryIO, Protocol

from ig_story_metrics.clock import Deadline
from ig_story_metrics.errors import StorageError

__all__ = ["Backend", "ConflictError", "LockBusy", "StorageError", "out_of_time"]

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
JSON_CONTENT_TYPE = "application/json"


class ConflictError(StorageError):
    """Someone else wrote the object since we read it (generation mismatch)."""


class LockBusy(StorageError):
    """Another writer holds the file's lock: raised only to a writer that asked not to wait."""


class Backend(Protocol):
    """A place for objects with generations: a local folder or a GCS bucket.

    `writers`: how many partitions a run writes at once (`jobs/hourly.py`'s write pool): as many
    as the CPUs for a folder, whose writes are CPU and syscalls; more for a bucket, whose writes
    wait on the network. `inline`: whether a run may write on its own thread, rather than in
    that pool, while the writes do not wait (a folder: `jobs/capture.Writes`)."""

    writers: int
    inline: bool

    def url(self, key: str) -> str:
        """Where `key` lives, for messages and reports."""
        ...

    def read(self, key: str, *, deadline: Deadline | None = None) -> tuple[bytes | None, int]:
        """The object's bytes and generation; (None, 0) when it does not exist."""
        ...

    def write(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        if_generation: int,
        deadline: Deadline | None = None,
        content_type: str | None = None,
    ) -> None:
        """Replace the object atomically if its generation is still `if_generation`, else conflict.
        `data`: the bytes, or a file read from its start (large media, never whole in memory).
        `content_type`: what a bucket serves it as (default: from the key, Parquet or JSON)."""
        ...

    def children(self, prefix: str) -> list[str]:
        """The names one level below the folder `prefix` (e.g. the accounts under `Instagram`)."""
        ...

    def move(
        self, key: str, new_key: str, *, if_generation: int, deadline: Deadline | None = None
    ) -> None:
        """Move the object, byte for byte, to `new_key` (which must not exist) if its generation is
        still `if_generation`; `ConflictError` when either precondition fails."""
        ...

    def keys(
        self,
        prefix: str,
        *,
        deadline: Deadline | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[str]:
        """The keys of the objects under `prefix` (a folder), sorted; hidden local files excluded.
        With `start` and `end`, only those whose name below `prefix` sorts from `start` up to,
        not including, `end` (a range of day folders in one listing, one request on GCS)."""
        ...

    def locked(
        self, key: str, *, deadline: Deadline | None = None, wait: bool = True
    ) -> contextlib.AbstractContextManager[None]:
        """Hold off other writers of `key` on this backend where it can (a no-op on GCS); with
        `wait` false, a lock another writer holds is a `LockBusy` at once."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def out_of_time(deadline: Deadline | None, action: str, where: str) -> StorageError | None:
    """The error to raise when the run's time budget is spent, else None."""
    if deadline is not None and deadline.expired():
        return StorageError(f"cannot {action} {where}: the run's time budget was spent")
    return None
