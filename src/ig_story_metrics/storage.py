"""The only code that writes: the lake layout, and an atomic, additive merge-write of daily files.

Layout (DESIGN.md), `{date}` the UTC date of the run:

    {root}/Instagram/{ACCOUNT}/insights/stories/{date}/instagram_story_metrics_{date}.parquet
    {root}/Instagram/{ACCOUNT}/schemas/stories/{date}/instagram_story_metrics_{date}_schema.json

`Storage.append()` reads the day's file and its generation, adds the run's rows (replacing rows of the
same `run_id`, so a retried run does not duplicate), and writes the result only if nobody else wrote
in between, re-reading on a conflict. Backends provide `read`, `write` (compare-and-swap on the
generation) and `locked`; the local one is a file lock + temp file + atomic rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import polars as pl

from ig_story_metrics import records

MAX_CONFLICT_RETRIES = 20


class StorageError(Exception):
    """The lake could not be read or written; the message names the file or object."""


class ConflictError(StorageError):
    """Someone else wrote the object since we read it (generation mismatch)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Where a run's rows went."""

    parquet: str
    schema: str
    rows_added: int
    rows_total: int


def parquet_key(account: str, day: date) -> str:
    d = day.isoformat()
    return f"Instagram/{account}/insights/stories/{d}/instagram_story_metrics_{d}.parquet"


def schema_key(account: str, day: date) -> str:
    d = day.isoformat()
    return f"Instagram/{account}/schemas/stories/{d}/instagram_story_metrics_{d}_schema.json"


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

    def locked(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Hold off other writers of `key` on this backend where it can (a no-op on GCS)."""
        ...


class LocalBackend:
    """A local folder. Generation = the file's inode and mtime; writes are temp file + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, key: str) -> str:
        return str(self.root / key)

    def _generation(self, path: Path) -> int:
        try:
            st = path.stat()
        except FileNotFoundError:
            return 0
        return (st.st_ino << 64) | st.st_mtime_ns

    def read(self, key: str) -> tuple[bytes | None, int]:
        path = self.root / key
        try:
            with path.open("rb") as handle:
                generation = (os.fstat(handle.fileno()).st_ino << 64) | os.fstat(
                    handle.fileno()
                ).st_mtime_ns
                return handle.read(), generation
        except FileNotFoundError:
            return None, 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None

    def write(self, key: str, data: bytes, *, if_generation: int) -> None:
        path = self.root / key
        if self._generation(path) != if_generation:
            raise ConflictError(f"{path} changed while it was being merged")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        path = self.root / key
        lock_path = path.parent / f".{path.name}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a+b")
        except OSError as exc:
            raise StorageError(f"cannot lock {path}: {exc.strerror or exc}") from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    """The lake: daily Parquet files of snapshot rows, with their JSON schema beside them."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def url(self, key: str) -> str:
        return self.backend.url(key)

    def append(self, account: str, day: date, frame: pl.DataFrame) -> WriteResult:
        """Add `frame`'s rows to the account's daily file (rows of the same run_id are replaced)."""
        key = parquet_key(account, day)
        new = records.conform(frame)
        run_ids = new.get_column("run_id").unique().to_list()
        with self.backend.locked(key):
            for _ in range(MAX_CONFLICT_RETRIES):
                data, generation = self.backend.read(key)
                merged = new
                if data is not None:
                    old = self._decode(key, data)
                    merged = pl.concat([old.filter(~pl.col("run_id").is_in(run_ids)), new])
                try:
                    self.backend.write(key, encode_parquet(merged), if_generation=generation)
                except ConflictError:
                    continue
                break
            else:
                raise StorageError(
                    f"gave up writing {self.url(key)}: it kept changing under "
                    f"{MAX_CONFLICT_RETRIES} merge attempts"
                )
        schema = self.write_schema(account, day)
        return WriteResult(self.url(key), schema, new.height, merged.height)

    def write_schema(self, account: str, day: date) -> str:
        key = schema_key(account, day)
        text = json.dumps(records.json_schema(), indent=2, ensure_ascii=False) + "\n"
        data = text.encode()
        with self.backend.locked(key):
            current, generation = self.backend.read(key)
            if current != data:
                with contextlib.suppress(ConflictError):  # a concurrent writer wrote the same
                    self.backend.write(key, data, if_generation=generation)
        return self.url(key)

    def read(self, account: str, day: date) -> pl.DataFrame:
        """The account's daily file (an empty frame when there is none)."""
        key = parquet_key(account, day)
        data, _ = self.backend.read(key)
        if data is None:
            return records.to_frame([])
        return self._decode(key, data)

    def _decode(self, key: str, data: bytes) -> pl.DataFrame:
        try:
            return records.conform(pl.read_parquet(io.BytesIO(data)))
        except Exception as exc:  # polars raises several types for corrupt files
            raise StorageError(
                f"{self.url(key)} is not a readable Parquet file of snapshots ({exc}); "
                "it was left untouched"
            ) from None


def encode_parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def open_storage(url: str) -> Storage:
    """A `Storage` for `STORAGE_URL`: a folder path or `file://` URL (GCS: `gs://bucket/prefix`)."""
    if url.startswith("gs://"):
        raise StorageError("gs:// storage is not available in this version")
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    if "://" in url:
        raise StorageError(f"unsupported STORAGE_URL {url!r}: use a folder, file://... or gs://...")
    return Storage(LocalBackend(Path(url).expanduser()))
