"""The backend protocol: a place for objects with generations (a local folder, a GCS bucket)."""

from __future__ import annotations

import contextlib
from typing import Protocol

from ig_story_metrics.errors import StorageError

__all__ = ["Backend", "ConflictError", "StorageError"]

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
JSON_CONTENT_TYPE = "application/json"


class ConflictError(StorageError):
    """Someone else wrote the object since we read it (generation mismatch)."""


class Backend(Protocol):
    """A place for objects with generations: a local folder or a GCS bucket."""

    def url(self, key: str) -> str:
        """Where `key` lives, for messages and reports."""
        ...

    def read(self, key: str) -> tuple[bytes | None, int]:
        """The object's bytes and generation; (None, 0) when it does not exist."""
        ...

    def write(self, key: str, data: bytes, *, if_generation: int) -> None:
        """Replace the object atomically if its generation is still `if_generation`, else conflict."""
        ...

    def children(self, prefix: str) -> list[str]:
        """The names one level below the folder `prefix` (e.g. the accounts under `Instagram`)."""
        ...

    def locked(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold off other writers of `key` on this backend where it can (a no-op on GCS)."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...
