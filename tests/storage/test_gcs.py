"""The GCS backend against a real GCS JSON API over HTTP (fake-gcs-server), with the official client.

A fault-injecting proxy in front of the emulator shows what happens on 5xx, 429, 403, lost answers
and outages.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from ig_story_metrics.clock import Deadline
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage import ConflictError, Lake, StorageError
from ig_story_metrics.storage import gcs as storage_module
from ig_story_metrics.storage.layout import snapshot_key, snapshot_schema_key
from tests.storage.conftest import Emulator, FaultProxy, free_port
from tests.storage.writer import ACCOUNT, DAY, ROWS, gcs_backend, open_test_lake, snapshot_frame

KEY = snapshot_key(ACCOUNT, DAY)
SCHEMA_KEY = snapshot_schema_key(ACCOUNT, DAY)


@pytest.fixture
def client(bucket: str) -> Iterator[Any]:
    """A plain google-cloud-storage client on the emulator (what a reader of the lake would use)."""
    c = gcs.Client(project="test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    with contextlib.closing(c):
        yield c


@pytest.fixture
def lake(bucket: str) -> Iterator[Lake]:
    """The lake in the test bucket under a prefix, opened the way the pipeline opens it."""
    with open_test_lake(f"gs://{bucket}/bronze") as storage:
        yield storage


def test_emulator_rejects_a_stale_if_generation_match(client: Any, bucket: str) -> None:
    """The emulator enforces ifGenerationMatch on single-request uploads (so races are real)."""
    blob = client.bucket(bucket).blob("probe.bin")
    blob.upload_from_string(b"one", if_generation_match=0)
    first = blob.generation
    with pytest.raises(PreconditionFailed):
        client.bucket(bucket).blob("probe.bin").upload_from_string(b"x", if_generation_match=0)
    client.bucket(bucket).blob("probe.bin").upload_from_string(b"two", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        client.bucket(bucket).blob("probe.bin").upload_from_string(
            b"three", if_generation_match=first
        )
    assert client.bucket(bucket).blob("probe.bin").download_as_bytes() == b"two"


def test_gcs_holds_the_same_layout_and_bytes_as_a_local_folder(
    lake: Lake, client: Any, bucket: str, tmp_path: Path
) -> None:
    """The same appends give the same object names (under the prefix) and schema bytes as local."""
    local = open_test_lake(str(tmp_path))
    for run in ("run-a", "run-b"):
        for target in (lake, local):
            target.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame(run))
            target.append(SNAPSHOTS, "LT", DAY, snapshot_frame(run, account="LT"))
    names = sorted(b.name for b in client.list_blobs(bucket))
    files = sorted(
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    assert names == [f"bronze/{f}" for f in files]
    for name in files:
        remote = client.bucket(bucket).blob(f"bronze/{name}").download_as_bytes()
        if name.endswith(".json"):
            assert remote == (tmp_path / name).read_bytes()
        else:
            assert pl.read_parquet(remote).equals(pl.read_parquet(tmp_path / name))
    blob = client.bucket(bucket).get_blob(f"bronze/{KEY}")
    assert blob.content_type == "application/vnd.apache.parquet"


def test_gcs_keeps_history_and_a_retried_run_does_not_duplicate(lake: Lake) -> None:
    """Runs add up in the object; the same run_id again replaces its rows (idempotent retry)."""
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    stored = lake.read(SNAPSHOTS, ACCOUNT, DAY)
    assert result.rows_total == stored.height == 2 * ROWS
    assert sorted(stored.get_column("run_id").unique().to_list()) == ["run-a", "run-b"]
    assert not stored.select("run_id", "story_id").is_duplicated().any()
    assert stored.schema == SNAPSHOTS.polars_schema


def test_uploads_are_single_request_conditional_uploads(proxy: FaultProxy, bucket: str) -> None:
    """Every upload is one multipart request carrying ifGenerationMatch; none is resumable."""
    with open_test_lake(f"gs://{bucket}") as lake:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    uploads = [path for method, path in proxy.requests if method == "POST"]
    assert uploads, proxy.requests
    assert all("uploadType=multipart" in p and "ifGenerationMatch=" in p for p in uploads)
    assert not any("resumable" in p for _, p in proxy.requests)
    assert any("ifGenerationMatch=0" in p for p in uploads)  # the first write of the day
    assert any("ifGenerationMatch=0" not in p for p in uploads)  # then the read generation
    # Only objects are touched (no bucket metadata calls): object permissions are enough.
    objects = (f"/download/storage/v1/b/{bucket}/o/", f"/upload/storage/v1/b/{bucket}/o?")
    assert all(p.startswith(objects) for _, p in proxy.requests), proxy.requests


def test_transient_errors_are_retried_with_backoff(proxy: FaultProxy, bucket: str) -> None:
    """503 and 429 answers on reads and uploads are retried; the run is stored exactly once."""
    proxy.fail("GET", "status", times=1, status=429)
    proxy.fail("POST", "status", times=2, status=503)
    proxy.fail("POST", "drop_before", times=1)  # a connection reset before the server saw it
    with open_test_lake(f"gs://{bucket}") as lake:
        result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        assert result.rows_total == ROWS
        assert lake.read(SNAPSHOTS, ACCOUNT, DAY).height == ROWS
    assert all(rule.times == 0 for rule in proxy.rules)


def test_an_upload_whose_answer_was_lost_is_not_stored_twice(
    proxy: FaultProxy, bucket: str
) -> None:
    """The upload lands but its answer is lost: the retry gets 412, the merge replaces the run's
    own rows, so the object holds both runs once each."""
    with open_test_lake(f"gs://{bucket}") as lake:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        proxy.requests.clear()
        proxy.fail("POST", "drop_after", times=1)
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
        stored = lake.read(SNAPSHOTS, ACCOUNT, DAY)
    assert stored.height == 2 * ROWS
    assert not stored.select("run_id", "story_id").is_duplicated().any()
    # landed-but-unanswered, retried -> 412, re-read, merged, uploaded again (schema unchanged)
    assert [m for m, _ in proxy.requests].count("POST") == 3, proxy.requests


def test_a_persistent_outage_gives_up_in_bounded_time(proxy: FaultProxy, bucket: str) -> None:
    """Answers that stay 503 are retried, then end in a one-line StorageError once the retry budget
    is spent, not a hang."""
    proxy.fail("GET", "status", times=-1, status=503)
    with Lake(gcs_backend(bucket, retry_seconds=1.5)) as lake, pytest.raises(StorageError) as err:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert len([m for m, _ in proxy.requests if m == "GET"]) > 1
    message = str(err.value)
    assert f"gs://{bucket}/{KEY}" in message
    assert "gave up after retrying for 1.5 s" in message
    assert "503" in message
    assert "\n" not in message


def test_an_unreachable_endpoint_gives_up_in_bounded_time(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connection refused on every attempt: StorageError naming the object once the retry budget
    is spent."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    with Lake(gcs_backend(bucket, retry_seconds=1.0)) as lake, pytest.raises(StorageError) as err:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert f"gs://{bucket}/{KEY}" in str(err.value)
    assert "gave up after retrying for 1 s" in str(err.value)
    assert "ConnectionError" in str(err.value)


def test_a_missing_bucket_is_a_clear_error_naming_bucket_and_object(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing to a bucket that does not exist: one line naming the bucket and the object."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    with open_test_lake("gs://missing-bucket") as lake, pytest.raises(StorageError) as err:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert str(err.value) == (
        f"cannot write gs://missing-bucket/{KEY}: bucket 'missing-bucket' does not exist (404)"
    )


def test_permission_denied_is_a_clear_error_and_not_retried(proxy: FaultProxy, bucket: str) -> None:
    """A 403 on upload fails at once with the object, the status and the role to grant."""
    proxy.fail("POST", "status", times=-1, status=403)
    with open_test_lake(f"gs://{bucket}") as lake, pytest.raises(StorageError) as err:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    message = str(err.value)
    assert message.startswith(f"cannot write gs://{bucket}/{KEY}: permission denied (403)")
    assert "roles/storage.objectUser" in message
    assert len([m for m, _ in proxy.requests if m == "POST"]) == 1


def test_the_client_is_created_lazily_and_once_per_storage(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No client before the first use; one client for every later read and write."""
    made: list[Any] = []
    real = storage_module._make_client

    def counting(emulator_host: str | None, project: str | None) -> Any:
        made.append(real(emulator_host, project))
        return made[-1]

    monkeypatch.setattr(storage_module, "_make_client", counting)
    with open_test_lake(f"gs://{bucket}") as lake:
        assert made == []
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        lake.append(SNAPSHOTS, "LT", DAY, snapshot_frame("run-a", account="LT"))
        lake.read(SNAPSHOTS, ACCOUNT, DAY)
        assert len(made) == 1


def test_the_environment_is_read_once_when_the_client_is_made(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`requests` read the proxy variables (and the CA bundle's) before every request, a third of
    the client's CPU: they are read once, when the client is made, for the bucket's endpoint,
    and no request reads them again. The proxy a variable names still applies, NO_PROXY too."""
    import requests.sessions  # noqa: PLC0415

    reads: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    with open_test_lake(f"gs://{bucket}") as lake:
        for run in ("run-a", "run-b"):
            lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame(run))
        lake.read(SNAPSHOTS, ACCOUNT, DAY)
    assert len(reads) == 1  # when the client was made: 2 runs' reads and writes, and a read

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/our-ca.pem")
    session = storage_module._make_client("https://storage.example.test", None)._http
    assert session.trust_env is False
    assert session.proxies["https"] == "http://proxy.example:3128"
    assert session.verify == "/etc/our-ca.pem"
    monkeypatch.setenv("NO_PROXY", "storage.example.test")
    session = storage_module._make_client("https://storage.example.test", None)._http
    assert "https" not in session.proxies


def test_the_emulator_needs_no_credentials(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With STORAGE_EMULATOR_HOST set, bogus ADC settings are ignored (anonymous client)."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    with open_test_lake(f"gs://{bucket}") as lake:
        assert lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a")).rows_total == ROWS


def test_missing_credentials_without_the_emulator_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real GCS without usable credentials: StorageError naming the object and what to set."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    with open_test_lake("gs://chapala-bronze-bucket") as lake, pytest.raises(StorageError) as err:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    message = str(err.value)
    assert message.startswith(f"cannot read gs://chapala-bronze-bucket/{KEY}: ")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message


def test_threads_share_one_client_and_lose_nothing(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the pipeline (accounts in worker threads): 8 threads appending runs of 4 accounts,
    two threads per account file, through one Lake: every run stored once, one client."""
    made: list[Any] = []
    real = storage_module._make_client

    def counting(emulator_host: str | None, project: str | None) -> Any:
        made.append(real(emulator_host, project))
        return made[-1]

    monkeypatch.setattr(storage_module, "_make_client", counting)
    accounts = ("NPI", "LT", "MD", "RE")
    jobs = [(a, f"{a}-t{t}-run{r}") for a in accounts for t in range(2) for r in range(3)]
    with open_test_lake(f"gs://{bucket}") as lake, ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda job: lake.append(
                    SNAPSHOTS, job[0], DAY, snapshot_frame(job[1], account=job[0])
                ),
                jobs,
            )
        )
        for account in accounts:
            stored = lake.read(SNAPSHOTS, account, DAY)
            assert sorted(stored.get_column("run_id").unique().to_list()) == sorted(
                run for a, run in jobs if a == account
            )
            assert stored.height == 6 * ROWS
    assert len(made) == 1


def test_retries_stop_at_the_run_deadline(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable endpoint with a 600 s retry setting: the retries end with the run's 1 s
    deadline, and the error says how long they were allowed."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    with Lake(gcs_backend(bucket, retry_seconds=600)) as lake, pytest.raises(StorageError) as err:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"), deadline=Deadline(1.0))
    allowed = re.search(r"gave up after retrying for ([0-9.]+) s", str(err.value))
    assert allowed is not None, err.value
    assert float(allowed.group(1)) <= 1.0
    assert f"gs://{bucket}/{KEY}" in str(err.value)


def test_the_schema_upload_failing_is_reported_on_its_own(proxy: FaultProxy, bucket: str) -> None:
    """A 403 on the schema upload only: the rows are stored, the result carries the schema's
    error naming its object."""
    proxy.fail("POST", "status", times=-1, status=403, body=b"_schema.json")
    with open_test_lake(f"gs://{bucket}") as lake:
        result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        assert lake.read(SNAPSHOTS, ACCOUNT, DAY).height == ROWS
    assert result.rows_added == ROWS
    assert result.schema_error is not None
    assert result.schema_error.startswith(f"cannot write gs://{bucket}/{SCHEMA_KEY}: ")
    assert "permission denied (403)" in result.schema_error


def test_an_unreadable_object_is_copied_then_deleted_under_preconditions(
    proxy: FaultProxy, bucket: str
) -> None:
    """Quarantine on GCS: a server-side copy of exactly the generation read, only if the target
    does not exist, then a delete only if the object is still that generation."""
    with open_test_lake(f"gs://{bucket}") as lake:
        lake.backend.write(KEY, b"not parquet", if_generation=0)
        generation = lake.backend.read(KEY)[1]
        proxy.requests.clear()
        result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        (moved,) = result.quarantined
        assert lake.backend.read(moved.removeprefix(f"gs://{bucket}/"))[0] == b"not parquet"
    copies = [p for m, p in proxy.requests if m == "POST" and "/copyTo/" in p]
    deletes = [p for m, p in proxy.requests if m == "DELETE"]
    assert len(copies) == 1, proxy.requests
    assert "ifGenerationMatch=0" in copies[0]
    assert f"ifSourceGenerationMatch={generation}" in copies[0]
    assert f"sourceGeneration={generation}" in copies[0]
    assert len(deletes) == 1
    assert f"ifGenerationMatch={generation}" in deletes[0]


def test_move_refuses_a_changed_source_and_an_existing_target(
    proxy: FaultProxy, bucket: str
) -> None:
    """The quarantine move: a source no longer at the generation read is a ConflictError and
    nothing is copied; so is GCS's 412 on the copy (an existing target) or on the delete (the
    source changed between copy and delete). The emulator does not enforce these two
    preconditions, so the proxy answers 412 in GCS's place."""
    with open_test_lake(f"gs://{bucket}") as lake:
        backend = lake.backend
        backend.write("a/f.parquet", b"bad", if_generation=0)
        _, generation = backend.read("a/f.parquet")
        with pytest.raises(ConflictError):
            backend.move("a/f.parquet", "a/f.parquet.corrupt-1", if_generation=generation + 1)
        assert backend.read("a/f.parquet.corrupt-1") == (None, 0)
        proxy.fail("POST", "status", status=412, path="/copyTo/")
        with pytest.raises(ConflictError):
            backend.move("a/f.parquet", "a/f.parquet.corrupt-1", if_generation=generation)
        assert backend.read("a/f.parquet.corrupt-1") == (None, 0)
        proxy.fail("DELETE", "status", status=412)
        with pytest.raises(ConflictError):
            backend.move("a/f.parquet", "a/f.parquet.corrupt-1", if_generation=generation)
        assert backend.read("a/f.parquet")[0] == b"bad"  # still there: the caller re-reads
        backend.move("a/f.parquet", "a/f.parquet.corrupt-2", if_generation=generation)
        assert backend.read("a/f.parquet") == (None, 0)
        assert backend.read("a/f.parquet.corrupt-2")[0] == b"bad"
