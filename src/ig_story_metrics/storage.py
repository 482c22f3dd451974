"""The only code that writes: the lake layout, and an atomic, additive merge-write of daily files.

Layout (DESIGN.md), `{date}` the UTC date of the run:

    {root}/Instagram/{ACCOUNT}/insights/stories/{date}/instagram_story_metrics_{date}.parquet
    {root}/Instagram/{ACCOUNT}/schemas/stories/{date}/instagram_story_metrics_{date}_schema.json

`Storage.append()` reads the day's file and its generation, adds the run's rows (replacing rows of the
same `run_id`, so a retried run does not duplicate), and writes the result only if nobody else wrote
in between, re-reading on a conflict. Backends provide `read`, `write` (compare-and-swap on the
generation) and `locked`:

- `LocalBackend`: a folder; a file lock + temp file + fsync + atomic rename.
- `GcsBackend`: a bucket through the official client; one single-request (multipart) upload with
  `ifGenerationMatch` (0 = "must not exist yet"), so a lost race is a 412 and nothing is overwritten.

`open_storage(url)` picks the backend from `STORAGE_URL`; nothing outside this module knows which one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import random
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from ig_story_metrics import records

MAX_CONFLICT_RETRIES = 50
CONFLICT_BACKOFF_CAP_SECONDS = 1.0
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
JSON_CONTENT_TYPE = "application/json"


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

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


# ---------------------------------------------------------------------------------------------------
# Local folder


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
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        return (st.st_ino << 64) | st.st_mtime_ns

    def read(self, key: str) -> tuple[bytes | None, int]:
        path = self.root / key
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                return handle.read(), (st.st_ino << 64) | st.st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
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
        """Exclusive flock on a hidden `.{name}.lock` beside the file (released by the kernel when
        a holder dies). Temp files left by a writer that was killed mid-write are removed here:
        every writer of `key` holds this lock, so any temp file found is an orphan."""
        path = self.root / key
        lock_path = path.parent / f".{path.name}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a+b")
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                for orphan in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
                    with contextlib.suppress(OSError):
                        orphan.unlink()
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        """Nothing to release."""


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------
# Google Cloud Storage

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


class GcsBackend:
    """A GCS bucket (and optional prefix), through the official `google-cloud-storage` client.

    Generation = the object's GCS generation (0 = absent). A write is one multipart upload (the
    client uses one request for objects up to 8 MiB: no `chunk_size`, size known) with
    `if_generation_match`: GCS replaces the object atomically or answers 412, which becomes a
    `ConflictError` so `Storage` re-reads and merges again.

    Transient failures (429, 408, 5xx, connection resets, timeouts) are retried with exponential
    backoff for at most `retry_seconds` per request. Retrying the upload is safe because it carries
    the generation precondition: if an attempt landed but its answer was lost, the retry gets a 412,
    `Storage` re-reads a file that already holds this run's rows and replaces them (same `run_id`),
    so nothing is duplicated and no concurrent writer's rows are overwritten.

    The client is created on first use, once per backend: with Application Default Credentials, or
    anonymously (project `GOOGLE_CLOUD_PROJECT` or "test") when `STORAGE_EMULATOR_HOST` is set.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        retry_seconds: float = 60.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.retry_seconds = retry_seconds
        self.request_timeout = request_timeout
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, GcsBackend] | None = None

    def object_name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        return f"gs://{self.bucket}/{self.object_name(key)}"

    def client(self) -> Any:
        """The storage client, created on first use (thread-safe, once per backend)."""
        with self._client_lock:
            if self._client is None:
                self._client = _make_client()
                # Close its HTTP connections when the backend goes away, even if nobody calls close().
                self._finalizer = weakref.finalize(self, self._client.close)
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._finalizer is not None:
                self._finalizer()
            self._client = None
            self._finalizer = None

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY  # noqa: PLC0415 - only when GCS is used

        return DEFAULT_RETRY.with_delay(initial=0.25, maximum=8.0, multiplier=2.0).with_timeout(
            self.retry_seconds
        )

    def _blob(self, key: str, action: str) -> Any:
        try:
            return self.client().bucket(self.bucket).blob(self.object_name(key))
        except Exception as exc:  # credentials and client construction errors of every kind
            raise StorageError(self._describe(action, key, exc)) from None

    def read(self, key: str) -> tuple[bytes | None, int]:
        from google.api_core.exceptions import NotFound  # noqa: PLC0415 - only when GCS is used

        blob = self._blob(key, "read")

        def download() -> bytes:
            # One request: the bytes and the generation they belong to (x-goog-generation header).
            # Retried here rather than inside the client, which drops the streamed answer of a
            # failed attempt without closing it (its socket stays open until garbage collection).
            try:
                return bytes(blob.download_as_bytes(retry=None, timeout=self.request_timeout))
            except Exception as exc:
                _release(exc)
                raise

        try:
            data = self._retry()(download)()
        except NotFound:
            return None, 0  # no file yet today (a missing bucket shows up on the write)
        except Exception as exc:
            raise StorageError(self._describe("read", key, exc)) from None
        generation = blob.generation
        if not generation:
            raise StorageError(f"cannot read {self.url(key)}: GCS answered without a generation")
        return data, int(generation)

    def write(self, key: str, data: bytes, *, if_generation: int) -> None:
        from google.api_core.exceptions import PreconditionFailed  # noqa: PLC0415

        blob = self._blob(key, "write")
        content_type = PARQUET_CONTENT_TYPE if key.endswith(".parquet") else JSON_CONTENT_TYPE
        try:
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=if_generation,
                retry=self._retry(),  # safe: the upload always carries the generation precondition
                timeout=self.request_timeout,
            )
        except PreconditionFailed as exc:
            _release(exc)
            raise ConflictError(f"{self.url(key)} changed while it was being merged") from None
        except Exception as exc:
            _release(exc)
            raise StorageError(self._describe("write", key, exc)) from None

    def locked(self, key: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def _describe(self, action: str, key: str, exc: BaseException) -> str:
        """One line naming the bucket and object, for the run report."""
        return f"cannot {action} {self.url(key)}: {_explain_gcs_error(exc, self, action)}"


def _release(exc: BaseException) -> None:
    """Give the connection of an error answer back: downloads are streamed, and an unread error
    body would otherwise keep its socket open until garbage collection."""
    for error in (exc, getattr(exc, "cause", None)):
        response = getattr(error, "response", None)
        if response is not None and hasattr(response, "close"):
            with contextlib.suppress(Exception):
                response.close()


def _make_client() -> Any:
    from google.cloud import storage as gcs  # noqa: PLC0415 - keeps local-only runs light

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "test"
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = gcs.Client(project=project, credentials=credentials)
    else:
        client = gcs.Client()
    # google-cloud-storage >= 3.x fetches bucket metadata for telemetry in background threads
    # (GET /b/{bucket} on first use and after every 404). We only touch objects: those calls
    # would need storage.buckets.get, and they outlive close() with open sockets. Turn them off.
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return client


def _explain_gcs_error(exc: BaseException, backend: GcsBackend, action: str) -> str:
    from google.api_core import exceptions as api  # noqa: PLC0415
    from google.auth import exceptions as auth  # noqa: PLC0415

    if isinstance(exc, api.RetryError):
        cause = exc.cause if exc.cause is not None else exc
        return (
            f"gave up after retrying for {backend.retry_seconds:g} s "
            f"({_explain_gcs_error(cause, backend, action)})"
        )
    if isinstance(exc, auth.DefaultCredentialsError):
        return (
            "no usable Google Cloud credentials (set GOOGLE_APPLICATION_CREDENTIALS, run "
            f"`gcloud auth application-default login`, or run as a service account): {_line(exc)}"
        )
    if isinstance(exc, api.NotFound) and action == "write":
        return f"bucket {backend.bucket!r} does not exist (404)"
    if isinstance(exc, api.Forbidden | api.Unauthorized):
        return (
            f"permission denied ({exc.code}): {_server_message(exc)}; the service account needs "
            f"roles/storage.objectUser on bucket {backend.bucket!r}"
        )
    if isinstance(exc, api.GoogleAPICallError):
        return f"GCS answered {exc.code}: {_server_message(exc)}"
    if isinstance(exc, auth.GoogleAuthError):
        return f"authentication failed: {_line(exc)}"
    return f"{type(exc).__name__}: {_line(exc)}"


def _server_message(exc: Any) -> str:
    """The `error.message` of a GCS JSON error body, else the exception's first line."""
    for error in getattr(exc, "errors", None) or ():
        if isinstance(error, dict) and error.get("message"):
            return _line(error["message"])
    response = getattr(exc, "response", None)
    with contextlib.suppress(Exception):
        body = response.json() if response is not None else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
            if message:
                return _line(message)
    return _line(exc)


def _line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------
# The lake


class Storage:
    """The lake: daily Parquet files of snapshot rows, with their JSON schema beside them."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the backend's connections (a GCS client's HTTP pool)."""
        self.backend.close()

    def url(self, key: str) -> str:
        return self.backend.url(key)

    def append(self, account: str, day: date, frame: pl.DataFrame) -> WriteResult:
        """Add `frame`'s rows to the account's daily file (rows of the same run_id are replaced)."""
        key = parquet_key(account, day)
        new = records.conform(frame)
        run_ids = new.get_column("run_id").unique().to_list()
        with self.backend.locked(key):
            for attempt in range(MAX_CONFLICT_RETRIES):
                data, generation = self.backend.read(key)
                merged = new
                if data is not None:
                    old = self._decode(key, data)
                    merged = pl.concat([old.filter(~pl.col("run_id").is_in(run_ids)), new])
                try:
                    self.backend.write(key, encode_parquet(merged), if_generation=generation)
                except ConflictError:
                    _conflict_pause(attempt)
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
        """Write the JSON schema beside the daily file (skipped when it is already the same)."""
        key = schema_key(account, day)
        text = json.dumps(records.json_schema(), indent=2, ensure_ascii=False) + "\n"
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
                f"{self.url(key)} is not a readable Parquet file of snapshots "
                f"({_line(exc, 200)}); it was left untouched"
            ) from None


def _conflict_pause(attempt: int) -> None:
    """Jittered exponential pause after a lost race, so concurrent writers do not collide again."""
    time.sleep(random.uniform(0, min(CONFLICT_BACKOFF_CAP_SECONDS, 0.01 * 2**attempt)))


def encode_parquet(frame: pl.DataFrame) -> bytes:
    """The frame as Parquet bytes, built in memory (uploaded or written in one piece)."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def open_storage(url: str) -> Storage:
    """A `Storage` for `STORAGE_URL`: a folder path, `file://` URL, or `gs://bucket[/prefix]`.

    Nothing is contacted here: a GCS client is created on first use, so a missing bucket or a
    permission problem becomes the failure of the accounts that tried to write, not of the run.
    """
    if url.startswith("gs://"):
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise StorageError(
                f"STORAGE_URL {url!r} does not name a valid bucket: use gs://BUCKET or "
                "gs://BUCKET/PREFIX"
            )
        return Storage(GcsBackend(bucket, prefix))
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    if "://" in url:
        raise StorageError(f"unsupported STORAGE_URL {url!r}: use a folder, file://... or gs://...")
    return Storage(LocalBackend(Path(url).expanduser()))
