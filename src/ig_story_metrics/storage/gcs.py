"""A Google Cloud Storage bucket as a backend, through the official `google-cloud-storage` client."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any, BinaryIO

from ig_story_metrics.clock import Deadline
from ig_story_metrics.storage.backend import (
    JSON_CONTENT_TYPE,
    PARQUET_CONTENT_TYPE,
    ConflictError,
    StorageError,
    out_of_time,
)


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
    anonymously (project `project` or "test") when an `emulator_host` is given (from the settings'
    `STORAGE_EMULATOR_HOST`).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        retry_seconds: float = 60.0,
        request_timeout: float = 60.0,
        emulator_host: str | None = None,
        project: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.retry_seconds = retry_seconds
        self.request_timeout = request_timeout
        self.emulator_host = emulator_host
        self.project = project
        # a write waits on the network: as many at once as asyncio gives threads by default
        self.writers = min(32, (os.cpu_count() or 1) + 4)
        self.inline = False
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
                self._client = _make_client(self.emulator_host, self.project)
                # Close its HTTP connections when the backend goes away, even if nobody calls close().
                self._finalizer = weakref.finalize(self, self._client.close)
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._finalizer is not None:
                self._finalizer()
            self._client = None
            self._finalizer = None

    def _bounds(self, deadline: Deadline | None, action: str, key: str) -> tuple[float, float]:
        """(retry for at most, each attempt times out after): the configured values, cut to what
        is left of the run's time budget."""
        late = out_of_time(deadline, action, self.url(key))
        if late is not None:
            raise late
        left = deadline.remaining() if deadline is not None else float("inf")
        return min(self.retry_seconds, left), min(self.request_timeout, left)

    def _retry(self, seconds: float) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY  # noqa: PLC0415 - only when GCS is used

        return DEFAULT_RETRY.with_delay(initial=0.25, maximum=8.0, multiplier=2.0).with_timeout(
            seconds
        )

    def _blob(self, key: str, action: str) -> Any:
        try:
            return self.client().bucket(self.bucket).blob(self.object_name(key))
        except Exception as exc:  # credentials and client construction errors of every kind
            raise StorageError(self._describe(action, key, exc)) from None

    def read(self, key: str, *, deadline: Deadline | None = None) -> tuple[bytes | None, int]:
        from google.api_core.exceptions import NotFound  # noqa: PLC0415 - only when GCS is used

        retry_for, timeout = self._bounds(deadline, "read", key)
        blob = self._blob(key, "read")

        def download() -> bytes:
            # One request: the bytes and the generation they belong to (x-goog-generation header).
            # Retried here rather than inside the client, which drops the streamed answer of a
            # failed attempt without closing it (its socket stays open until garbage collection).
            try:
                return bytes(blob.download_as_bytes(retry=None, timeout=timeout))
            except Exception as exc:
                _release(exc)
                raise

        try:
            data = self._retry(retry_for)(download)()
        except NotFound:
            return None, 0  # no file yet today (a missing bucket shows up on the write)
        except Exception as exc:
            raise StorageError(self._describe("read", key, exc, retry_for)) from None
        generation = blob.generation
        if not generation:
            raise StorageError(f"cannot read {self.url(key)}: GCS answered without a generation")
        return data, int(generation)

    def write(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        if_generation: int,
        deadline: Deadline | None = None,
        content_type: str | None = None,
    ) -> None:
        from google.api_core.exceptions import PreconditionFailed  # noqa: PLC0415

        retry_for, timeout = self._bounds(deadline, "write", key)
        blob = self._blob(key, "write")
        if content_type is None:
            content_type = PARQUET_CONTENT_TYPE if key.endswith(".parquet") else JSON_CONTENT_TYPE
        upload = dict(
            content_type=content_type,
            if_generation_match=if_generation,
            retry=self._retry(retry_for),  # safe: the upload always carries the precondition
            timeout=timeout,
        )
        try:
            if isinstance(data, bytes):
                blob.upload_from_string(data, **upload)
            else:  # a file (large media): streamed, in chunks past 8 MiB
                blob.upload_from_file(data, rewind=True, **upload)
        except PreconditionFailed as exc:
            _release(exc)
            raise ConflictError(f"{self.url(key)} changed while it was being merged") from None
        except Exception as exc:
            _release(exc)
            raise StorageError(self._describe("write", key, exc, retry_for)) from None

    def children(self, prefix: str) -> list[str]:
        """The "folders" one level below `prefix`: a delimited listing (names only, no objects)."""
        folder = self.object_name(prefix.strip("/")) + "/"
        retry_for, timeout = self._bounds(None, "list", prefix)
        try:
            pages = self.client().list_blobs(
                self.bucket,
                prefix=folder,
                delimiter="/",
                retry=self._retry(retry_for),
                timeout=timeout,
            )
            found: set[str] = set()
            for page in pages.pages:
                found.update(page.prefixes)
        except Exception as exc:
            raise StorageError(self._describe("list", prefix, exc, retry_for)) from None
        return sorted(name[len(folder) :].rstrip("/") for name in found)

    def move(
        self, key: str, new_key: str, *, if_generation: int, deadline: Deadline | None = None
    ) -> None:
        """A server-side copy of exactly generation `if_generation` to `new_key` (only if that does
        not exist), then a delete of `key` only if it is still that generation. Both carry
        preconditions, so retrying them is safe. If the delete loses (someone wrote `key` in
        between), the copy stays as a quarantined copy of the old object and the caller re-reads;
        if `key` is already gone (a retried delete whose answer was lost), the move is done."""
        from google.api_core.exceptions import NotFound, PreconditionFailed  # noqa: PLC0415

        retry_for, timeout = self._bounds(deadline, "move aside", key)
        source = self._blob(key, "move aside")
        conditions = {"retry": self._retry(retry_for), "timeout": timeout}
        try:
            source.bucket.copy_blob(
                source,
                source.bucket,
                self.object_name(new_key),
                source_generation=if_generation,
                if_generation_match=0,
                if_source_generation_match=if_generation,
                **conditions,
            )
            with contextlib.suppress(NotFound):
                source.delete(if_generation_match=if_generation, **conditions)
        except (PreconditionFailed, NotFound) as exc:
            _release(exc)
            raise ConflictError(f"{self.url(key)} changed before it could be moved aside") from None
        except Exception as exc:
            _release(exc)
            raise StorageError(self._describe("move aside", key, exc, retry_for)) from None

    def keys(
        self,
        prefix: str,
        *,
        deadline: Deadline | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[str]:
        folder = self.object_name(prefix.rstrip("/") + "/")
        retry_for, timeout = self._bounds(deadline, "list", prefix)
        bounds = {
            name: folder + value
            for name, value in (("start_offset", start), ("end_offset", end))
            if value is not None
        }
        try:
            blobs = self.client().list_blobs(
                self.bucket,
                prefix=folder,
                retry=self._retry(retry_for),
                timeout=timeout,
                **bounds,
            )
            names = [blob.name for blob in blobs]
        except Exception as exc:
            raise StorageError(self._describe("list", prefix, exc, retry_for)) from None
        root = len(self.object_name(""))
        return sorted(name[root:] for name in names)

    def locked(
        self, key: str, *, deadline: Deadline | None = None, wait: bool = True
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def _describe(
        self, action: str, key: str, exc: BaseException, retried_for: float | None = None
    ) -> str:
        """One line naming the bucket and object, for the run report."""
        retried = self.retry_seconds if retried_for is None else retried_for
        return f"cannot {action} {self.url(key)}: {_explain_gcs_error(exc, self, action, retried)}"


def _release(exc: BaseException) -> None:
    """Give the connection of an error answer back: downloads are streamed, and an unread error
    body would otherwise keep its socket open until garbage collection."""
    for error in (exc, getattr(exc, "cause", None)):
        response = getattr(error, "response", None)
        if response is not None and hasattr(response, "close"):
            with contextlib.suppress(Exception):
                response.close()


def _make_client(emulator_host: str | None, project: str | None) -> Any:
    import google.cloud.storage as gcs  # noqa: PLC0415 - keeps local-only runs light

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = gcs.Client(
            project=project or "test",
            credentials=credentials,
            client_options={"api_endpoint": _endpoint(emulator_host)},
        )
    else:
        client = gcs.Client(project=project) if project else gcs.Client()
    # google-cloud-storage >= 3.x fetches bucket metadata for telemetry in background threads
    # (GET /b/{bucket} on first use and after every 404). We only touch objects: those calls
    # would need storage.buckets.get, and they outlive close() with open sockets. Turn them off.
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    _read_environment_once(client._http, client._connection.API_BASE_URL)
    return client


def _read_environment_once(session: Any, endpoint: str) -> None:
    """Resolve, once, what `requests` reads from the environment before every request: the
    proxy for the endpoint (HTTPS_PROXY, ALL_PROXY, ..., NO_PROXY honoured) and the CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Then stop reading it: every request scanned every
    variable of the process (a third of the client's CPU with 80 of them, by yappi; a run of
    200 accounts x 20 stories into the emulator, 4 interleaved pairs: 4.9-5.9 s of CPU, against
    5.6-6.8 s before this session). Every request goes to `endpoint`'s host.
    ~/.netrc is no longer consulted either: its basic auth would replace the OAuth header."""
    resolved = session.merge_environment_settings(endpoint, {}, None, None, None)
    session.proxies, session.verify = resolved["proxies"], resolved["verify"]
    session.trust_env = False


def _endpoint(host: str) -> str:
    return host if "://" in host else f"http://{host}"


def _explain_gcs_error(
    exc: BaseException, backend: GcsBackend, action: str, retried_for: float
) -> str:
    from google.api_core import exceptions as api  # noqa: PLC0415
    from google.auth import exceptions as auth  # noqa: PLC0415

    if isinstance(exc, api.RetryError):
        cause = exc.cause if exc.cause is not None else exc
        return (
            f"gave up after retrying for {retried_for:.3g} s "
            f"({_explain_gcs_error(cause, backend, action, retried_for)})"
        )
    if isinstance(exc, auth.DefaultCredentialsError):
        return (
            "no usable Google Cloud credentials (set GOOGLE_APPLICATION_CREDENTIALS, run "
            f"`gcloud auth application-default login`, or run as a service account): {line(exc)}"
        )
    if isinstance(exc, api.NotFound) and action in ("write", "list"):
        return f"bucket {backend.bucket!r} does not exist (404)"
    if isinstance(exc, api.Forbidden | api.Unauthorized):
        return (
            f"permission denied ({exc.code}): {_server_message(exc)}; the service account needs "
            f"roles/storage.objectUser on bucket {backend.bucket!r}"
        )
    if isinstance(exc, api.GoogleAPICallError):
        return f"GCS answered {exc.code}: {_server_message(exc)}"
    if isinstance(exc, auth.GoogleAuthError):
        return f"authentication failed: {line(exc)}"
    return f"{type(exc).__name__}: {line(exc)}"


def _server_message(exc: Any) -> str:
    """The `error.message` of a GCS JSON error body, else the exception's first line."""
    for error in getattr(exc, "errors", None) or ():
        if isinstance(error, dict) and error.get("message"):
            return line(error["message"])
    response = getattr(exc, "response", None)
    with contextlib.suppress(Exception):
        body = response.json() if response is not None else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
            if message:
                return line(message)
    return line(exc)


def line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
