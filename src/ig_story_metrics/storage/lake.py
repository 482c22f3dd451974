"""The lake: writes any declared table (`model.table.Table`) and reads it back.

`Lake.append()` (disposition `append_by_run`) reads the partition's file and its generation, merges
the run's rows into it (`storage/merge.py`: every stored row and column kept, a re-run's own rows
replaced), and writes the result only if nobody else wrote in between, re-reading on a conflict.
A stored file that is not readable Parquet is moved aside, byte for byte, to
`{file}.corrupt-{UTC time}` (an ERROR in the log, counted in the result) and the partition starts
afresh. The JSON schema is written beside it; its failure is reported on its own, since the rows are
stored by then. Every wait (lock, GCS retries) is bounded by the run's `Deadline`: a slow bucket
after a slow Graph phase must not run past the function's timeout and lose the report.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ig_story_metrics.clock import Clock, Deadline, utc_now
from ig_story_metrics.model.location import StorageLocation, parse_storage_url
from ig_story_metrics.model.table import Table
from ig_story_metrics.storage.backend import (
    Backend,
    ConflictError,
    LockBusy,
    StorageError,
    out_of_time,
)
from ig_story_metrics.storage.gcs import GcsBackend, line
from ig_story_metrics.storage.layout import (
    QUARANTINE_MARK,
    quarantine_key,
    schema_key,
    table_key,
    table_prefix,
)
from ig_story_metrics.storage.local import LocalBackend
from ig_story_metrics.storage.merge import merge, unite

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

MAX_CONFLICT_RETRIES = 50
CONFLICT_BACKOFF_CAP_SECONDS = 1.0
UNDECLARED = "a column this version of ig-story-metrics does not declare; kept as it was stored"

log = logging.getLogger("ig_story_metrics.storage")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Where a run's rows went; what was moved aside; whether the schema file failed."""

    parquet: str
    schema: str
    rows_added: int
    rows_total: int
    quarantined: tuple[str, ...] = ()
    schema_error: str | None = None
    # the whole partition as written (what `read` gives back): the run's final values use it
    frame: pl.DataFrame | None = field(default=None, repr=False, compare=False)


class Lake:
    """Declared tables in a backend (a local folder or a GCS bucket)."""

    def __init__(self, backend: Backend, clock: Clock = utc_now) -> None:
        self.backend = backend
        self.clock = clock

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
        wait: bool = True,
    ) -> WriteResult:
        """Merge `frame`'s rows into one partition of `table` (see the module docstring).

        `wait` false: a lock another writer holds, the partition's or its schema's, is a
        `LockBusy` at once. The rows may be stored by then: the same append made again replaces
        them (they are the run's own), so it stores them once."""
        key = table_key(table, account, day)
        new = table.conform(frame)
        moved: list[str] = []
        with self.backend.locked(key, deadline=deadline, wait=wait):
            merged = self._merge_into(table, key, new, moved, deadline)
        declared = table.polars_schema
        extra = {name: dtype for name, dtype in merged.schema.items() if name not in declared}
        schema_error = None
        try:
            schema = self.write_schema(
                table, account, day, extra=extra, deadline=deadline, wait=wait
            )
        except LockBusy:
            raise
        except StorageError as exc:  # the rows are stored: say so, and report this on its own
            schema, schema_error = self.url(schema_key(table, account, day)), str(exc)
        return WriteResult(
            self.url(key), schema, new.height, merged.height, tuple(moved), schema_error, merged
        )

    def _merge_into(
        self,
        table: Table,
        key: str,
        new: pl.DataFrame,
        moved: list[str],
        deadline: Deadline | None,
    ) -> pl.DataFrame:
        """Read, merge, write with the read generation; again on a lost race."""
        where = self.url(key)
        for attempt in range(MAX_CONFLICT_RETRIES):
            late = out_of_time(deadline, "write", where)
            if late is not None:
                raise late
            data, generation = self.backend.read(key, deadline=deadline)
            merged = new
            try:
                if data is not None:
                    stored, problem = _parse(data)
                    if stored is None:
                        moved.append(self._quarantine(key, generation, problem, deadline))
                        generation = 0
                    else:
                        merged = merge(table, stored, new, where)
                payload = encode_parquet(merged)
                self.backend.write(key, payload, if_generation=generation, deadline=deadline)
            except ConflictError:
                _conflict_pause(attempt)
                continue
            return merged
        raise StorageError(
            f"gave up writing {where}: it kept changing under {MAX_CONFLICT_RETRIES} merge attempts"
        )

    def replace_partition(
        self,
        table: Table,
        account: str,
        day: date,
        frame: pl.DataFrame,
        *,
        deadline: Deadline | None = None,
    ) -> bool:
        """Replace one partition of `table` whole with `frame` (disposition `replace_partition`),
        atomically and only over the generation just read (GCS: `if_generation_match`); a partition
        that already holds these bytes is left alone. True when it was written. The JSON schema
        goes beside the table's root."""
        key = table_key(table, account, day)
        payload = encode_parquet(table.conform(frame))
        written = False
        with self.backend.locked(key, deadline=deadline):
            for attempt in range(MAX_CONFLICT_RETRIES):
                late = out_of_time(deadline, "write", self.url(key))
                if late is not None:
                    raise late
                current, generation = self.backend.read(key, deadline=deadline)
                if current == payload:
                    break
                try:
                    self.backend.write(key, payload, if_generation=generation, deadline=deadline)
                except ConflictError:  # another writer in between: check again
                    _conflict_pause(attempt)
                    continue
                written = True
                break
            else:
                raise StorageError(f"gave up writing {self.url(key)}: it kept changing")
        self.write_schema(table, account, day, deadline=deadline)
        return written

    def _quarantine(
        self, key: str, generation: int, problem: str, deadline: Deadline | None
    ) -> str:
        """Move an unreadable file aside, byte for byte, and say so loudly."""
        target = quarantine_key(key, self.clock())
        self.backend.move(key, target, if_generation=generation, deadline=deadline)
        log.error(
            "%s is not a readable Parquet file (%s): moved aside to %s; the file starts afresh",
            self.url(key),
            problem,
            self.url(target),
            extra={"event": "quarantined", "file": self.url(key), "moved_to": self.url(target)},
        )
        return self.url(target)

    def quarantined(self, table: Table, account: str) -> list[str]:
        """Every file of `account`'s partitions of `table` that was moved aside as unreadable."""
        keys = self.backend.keys(table_prefix(table, account))
        return [self.url(k) for k in keys if QUARANTINE_MARK in k.rsplit("/", 1)[-1]]

    def write_schema(
        self,
        table: Table,
        account: str,
        day: date,
        *,
        extra: Mapping[str, pl.DataType] | None = None,
        deadline: Deadline | None = None,
        wait: bool = True,
    ) -> str:
        """Write the JSON schema beside the partition (skipped when it is already the same).

        The schema only grows: properties it already has that this version does not declare are
        kept, and `extra` (undeclared columns the partition holds) are added."""
        key = schema_key(table, account, day)
        with self.backend.locked(key, deadline=deadline, wait=wait):
            for attempt in range(MAX_CONFLICT_RETRIES):
                current, generation = self.backend.read(key, deadline=deadline)
                data = _schema_bytes(table, current, extra or {})
                if current == data:
                    return self.url(key)
                try:
                    self.backend.write(key, data, if_generation=generation, deadline=deadline)
                except ConflictError:  # a concurrent run wrote it: check what it wrote
                    _conflict_pause(attempt)
                    continue
                return self.url(key)
        raise StorageError(
            f"gave up writing {self.url(key)}: it kept changing under "
            f"{MAX_CONFLICT_RETRIES} attempts"
        )

    def read(self, table: Table, account: str, day: date) -> pl.DataFrame:
        """One partition of `table`: the declared columns, then any others the file holds (an
        empty frame of the table's schema when there is no file)."""
        key = table_key(table, account, day)
        data, _ = self.backend.read(key)
        return self.decode(table, key, data)

    def decode(
        self, table: Table, key: str, data: bytes | None, stored: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """The bytes of `key` (None: no file) as `read` gives them; `stored`: the frame Polars
        already decoded from them (`storage.scan.read_partitions`)."""
        if data is None:
            return table.frame([])
        problem = ""
        if stored is None:
            stored, problem = _parse(data)
        if stored is None:
            raise StorageError(
                f"{self.url(key)} is not a readable Parquet file of {table.name} ({problem})"
            )
        return unite(table, stored, self.url(key))


def _parse(data: bytes) -> tuple[pl.DataFrame | None, str]:
    """The stored frame, or None and why it cannot be read."""
    try:
        return pl.read_parquet(io.BytesIO(data)), ""
    except Exception as exc:  # polars raises several types for corrupt files
        return None, line(exc, 200)


def _schema_bytes(table: Table, current: bytes | None, extra: Mapping[str, pl.DataType]) -> bytes:
    return _schema_text(table, current, tuple((name, str(t)) for name, t in extra.items()))


@functools.lru_cache(maxsize=64)
def _schema_text(table: Table, current: bytes | None, extra: tuple[tuple[str, str], ...]) -> bytes:
    """The schema file's bytes (cached: every account of a run writes the same one)."""
    schema = table.json_schema()
    properties: dict[str, Any] = schema["properties"]
    for name, spec in _stored_properties(current).items():
        properties.setdefault(name, spec)
    for name, dtype in extra:
        properties.setdefault(name, {"description": UNDECLARED, "x-parquet-type": dtype})
    return (json.dumps(schema, indent=2, ensure_ascii=False) + "\n").encode()


def _stored_properties(current: bytes | None) -> dict[str, Any]:
    """The `properties` of a stored JSON schema ({} when there is none or it is unreadable)."""
    try:
        properties = json.loads(current or b"{}").get("properties")
    except (ValueError, AttributeError):
        return {}
    return properties if isinstance(properties, dict) else {}


def _conflict_pause(attempt: int) -> None:
    """Jittered exponential pause after a lost race, so concurrent writers do not collide again."""
    time.sleep(random.uniform(0, min(CONFLICT_BACKOFF_CAP_SECONDS, 0.01 * 2**attempt)))


def encode_parquet(frame: pl.DataFrame) -> bytes:
    """The frame as Parquet bytes, built in memory (uploaded or written in one piece)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def open_lake(
    url: str | StorageLocation,
    *,
    emulator_host: str | None = None,
    project: str | None = None,
) -> Lake:
    """A `Lake` for `STORAGE_URL` (parsed by `model.location`: a folder, `file:///...`, or
    `gs://bucket[/prefix]`); a malformed one is a `StorageError`.

    Nothing is contacted here: a GCS client is created on first use, so a missing bucket or a
    permission problem becomes the failure of the accounts that tried to write, not of the run.
    """
    if isinstance(url, str):
        try:
            url = parse_storage_url(url)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
    if url.kind == "gcs":
        return Lake(
            GcsBackend(url.bucket, url.prefix, emulator_host=emulator_host, project=project)
        )
    return Lake(LocalBackend(Path(url.path).expanduser()))
