"""The lake: writes any declared table (`model.table.Table`) and reads it back.

`Lake.append()` (disposition `append_by_run`) reads the partition's file and its generation, adds the
run's rows (replacing rows of the same `run_id`, so a retried run does not duplicate), and writes the
result only if nobody else wrote in between, re-reading on a conflict. The JSON schema is written
beside it. Every attempt is bounded by the run's `Deadline`: a slow bucket after a slow Graph phase
must not run past the function's timeout and lose the report.
"""

from __future__ import annotations

import io
import json
import random
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from ig_story_metrics.clock import Deadline
from ig_story_metrics.model.table import Table
from ig_story_metrics.storage.backend import Backend, ConflictError, StorageError
from ig_story_metrics.storage.gcs import BUCKET_NAME, GcsBackend, line
from ig_story_metrics.storage.layout import schema_key, table_key
from ig_story_metrics.storage.local import LocalBackend

MAX_CONFLICT_RETRIES = 50
CONFLICT_BACKOFF_CAP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Where a run's rows went."""

    parquet: str
    schema: str
    rows_added: int
    rows_total: int


class Lake:
    """Declared tables in a backend (a local folder or a GCS bucket)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the backend's connections (a GCS client's HTTP pool)."""
        self.backend.close()

    def url(self, key: str) -> str:
        return self.backend.url(key)

    def append(
        self,
        table: Table,
        account: str,
        day: date,
        frame: pl.DataFrame,
        *,
        deadline: Deadline | None = None,
    ) -> WriteResult:
        """Add `frame`'s rows to one partition of `table` (rows of the same run_id are replaced)."""
        key = table_key(table, account, day)
        new = table.conform(frame)
        run_ids = new.get_column("run_id").unique().to_list()
        with self.backend.locked(key, deadline=deadline):
            for attempt in range(MAX_CONFLICT_RETRIES):
                _check_time(deadline, self.url(key))
                data, generation = self.backend.read(key, deadline=deadline)
                merged = new
                if data is not None:
                    old = self._decode(table, key, data)
                    merged = pl.concat([old.filter(~pl.col("run_id").is_in(run_ids)), new])
                try:
                    self.backend.write(
                        key, encode_parquet(merged), if_generation=generation, deadline=deadline
                    )
                except ConflictError:
                    _conflict_pause(attempt)
                    continue
                break
            else:
                raise StorageError(
                    f"gave up writing {self.url(key)}: it kept changing under "
                    f"{MAX_CONFLICT_RETRIES} merge attempts"
                )
        schema = self.write_schema(table, account, day)
        return WriteResult(self.url(key), schema, new.height, merged.height)

    def write_schema(self, table: Table, account: str, day: date) -> str:
        """Write the JSON schema beside the partition (skipped when it is already the same)."""
        key = schema_key(table, account, day)
        text = json.dumps(table.json_schema(), indent=2, ensure_ascii=False) + "\n"
        data = text.encode()
        with self.backend.locked(key):
            for attempt in range(MAX_CONFLICT_RETRIES):
                current, generation = self.backend.read(key)
                if current == data:
                    break
                try:
                    self.backend.write(key, data, if_generation=generation)
                except ConflictError:  # a concurrent run wrote it: check what it wrote
                    _conflict_pause(attempt)
                    continue
                break
        return self.url(key)

    def read(self, table: Table, account: str, day: date) -> pl.DataFrame:
        """One partition of `table` (an empty frame when there is none)."""
        key = table_key(table, account, day)
        data, _ = self.backend.read(key)
        if data is None:
            return table.frame([])
        return self._decode(table, key, data)

    def _decode(self, table: Table, key: str, data: bytes) -> pl.DataFrame:
        try:
            return table.conform(pl.read_parquet(io.BytesIO(data)))
        except Exception as exc:  # polars raises several types for corrupt files
            raise StorageError(
                f"{self.url(key)} is not a readable Parquet file of {table.name} "
                f"({line(exc, 200)}); it was left untouched"
            ) from None


def _check_time(deadline: Deadline | None, where: str) -> None:
    if deadline is not None and deadline.expired():
        raise StorageError(f"run time budget exhausted before {where} could be written")


def _conflict_pause(attempt: int) -> None:
    """Jittered exponential pause after a lost race, so concurrent writers do not collide again."""
    time.sleep(random.uniform(0, min(CONFLICT_BACKOFF_CAP_SECONDS, 0.01 * 2**attempt)))


def encode_parquet(frame: pl.DataFrame) -> bytes:
    """The frame as Parquet bytes, built in memory (uploaded or written in one piece)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def open_lake(url: str, *, emulator_host: str | None = None, project: str | None = None) -> Lake:
    """A `Lake` for `STORAGE_URL`: a folder path, `file://` URL, or `gs://bucket[/prefix]`.

    Nothing is contacted here: a GCS client is created on first use, so a missing bucket or a
    permission problem becomes the failure of the accounts that tried to write, not of the run.
    """
    if url.startswith("gs://"):
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        if not BUCKET_NAME.fullmatch(bucket):
            raise StorageError(
                f"STORAGE_URL {url!r} does not name a valid bucket: use gs://BUCKET or "
                "gs://BUCKET/PREFIX"
            )
        return Lake(GcsBackend(bucket, prefix, emulator_host=emulator_host, project=project))
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    if "://" in url:
        raise StorageError(f"unsupported STORAGE_URL {url!r}: use a folder, file://... or gs://...")
    return Lake(LocalBackend(Path(url).expanduser()))
