"""The local folder backend: layout, additive merge, idempotent retries, atomic writes, errors."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage import ConflictError, Lake, StorageError
from ig_story_metrics.storage.gcs import GcsBackend
from ig_story_metrics.storage.local import LocalBackend
from tests.storage.writer import ACCOUNT, DAY, ROWS, open_test_lake, snapshot_frame

PARQUET = "Instagram/NPI/insights/stories/2026-11-24/instagram_story_metrics_2026-11-24.parquet"
SCHEMA = "Instagram/NPI/schemas/stories/2026-11-24/instagram_story_metrics_2026-11-24_schema.json"


def lake_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_append_writes_the_documented_layout_and_nothing_else(tmp_path: Path) -> None:
    """One append creates exactly the daily Parquet file and its schema JSON at the DESIGN paths."""
    storage = open_test_lake(str(tmp_path))
    result = storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    visible = [f for f in lake_files(tmp_path) if not Path(f).name.startswith(".")]
    assert visible == sorted([PARQUET, SCHEMA])
    assert result.parquet == str(tmp_path / PARQUET)
    assert result.schema == str(tmp_path / SCHEMA)
    assert (result.rows_added, result.rows_total) == (ROWS, ROWS)
    stored = pl.read_parquet(tmp_path / PARQUET)
    assert stored.schema == SNAPSHOTS.polars_schema
    assert json.loads((tmp_path / SCHEMA).read_text()) == SNAPSHOTS.json_schema()


def test_file_url_and_folder_path_are_the_same_lake(tmp_path: Path) -> None:
    """`file://` URLs and plain folders both select the local backend rooted at that folder."""
    open_test_lake(f"file://{tmp_path}").append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert open_test_lake(str(tmp_path)).read(SNAPSHOTS, ACCOUNT, DAY).height == ROWS


def test_every_run_adds_its_rows_and_keeps_earlier_ones(tmp_path: Path) -> None:
    """The daily file is history: three runs leave three runs' rows, in order of arrival."""
    storage = open_test_lake(str(tmp_path))
    for run in ("run-a", "run-b", "run-c"):
        storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame(run))
    stored = storage.read(SNAPSHOTS, ACCOUNT, DAY)
    assert stored.height == 3 * ROWS
    assert stored.get_column("run_id").unique(maintain_order=True).to_list() == [
        "run-a",
        "run-b",
        "run-c",
    ]


def test_a_retried_run_replaces_its_rows_instead_of_duplicating(tmp_path: Path) -> None:
    """Appending the same run_id again keeps one copy of that run and every other run's rows."""
    storage = open_test_lake(str(tmp_path))
    storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    result = storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    stored = storage.read(SNAPSHOTS, ACCOUNT, DAY)
    assert result.rows_total == stored.height == 2 * ROWS
    assert stored.filter(pl.col("run_id") == "run-a").height == ROWS
    assert not stored.select("run_id", "story_id").is_duplicated().any()


def test_accounts_and_days_go_to_separate_files(tmp_path: Path) -> None:
    """Rows land in their own account's file for the given day, never in another's."""
    storage = open_test_lake(str(tmp_path))
    storage.append(SNAPSHOTS, "NPI", DAY, snapshot_frame("run-a"))
    storage.append(SNAPSHOTS, "LT", DAY, snapshot_frame("run-a", account="LT"))
    storage.append(SNAPSHOTS, "NPI", date(2026, 11, 25), snapshot_frame("run-b"))
    assert storage.read(SNAPSHOTS, "NPI", DAY).get_column("account").unique().to_list() == ["NPI"]
    assert storage.read(SNAPSHOTS, "LT", DAY).get_column("account").unique().to_list() == ["LT"]
    assert (
        storage.read(SNAPSHOTS, "NPI", date(2026, 11, 25)).get_column("run_id").to_list()
        == ["run-b"] * ROWS
    )


def test_reading_a_day_without_a_file_gives_an_empty_frame_of_the_schema(tmp_path: Path) -> None:
    """No file yet: an empty frame with the stored schema, not an error."""
    stored = open_test_lake(str(tmp_path)).read(SNAPSHOTS, ACCOUNT, DAY)
    assert stored.height == 0
    assert stored.schema == SNAPSHOTS.polars_schema


def test_orphaned_temp_files_of_a_killed_writer_are_removed_by_the_next_writer(
    tmp_path: Path,
) -> None:
    """A temp file left by a dead writer is cleaned up under the lock; unrelated files stay."""
    storage = open_test_lake(str(tmp_path))
    storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    folder = (tmp_path / PARQUET).parent
    orphan = folder / f".{(tmp_path / PARQUET).name}.x1y2z3.tmp"
    orphan.write_bytes(b"half a parquet file")
    neighbour = folder / "notes.txt"
    neighbour.write_text("keep me")
    storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    assert not orphan.exists()
    assert neighbour.read_text() == "keep me"
    assert storage.read(SNAPSHOTS, ACCOUNT, DAY).height == 2 * ROWS


def test_a_folder_that_cannot_be_created_is_a_storage_error_naming_the_path(
    tmp_path: Path,
) -> None:
    """A file where the lake folder should be: StorageError naming the file that was refused."""
    blocker = tmp_path / "lake"
    blocker.write_text("not a folder")
    storage = open_test_lake(str(blocker))
    with pytest.raises(StorageError) as caught:
        storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert str(blocker / PARQUET) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_an_unwritable_folder_is_a_storage_error_naming_the_path(tmp_path: Path) -> None:
    """A read-only lake folder: StorageError naming the daily file, the folder left as it was."""
    root = tmp_path / "lake"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(StorageError) as caught:
            open_test_lake(str(root)).append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
        assert str(root / PARQUET) in str(caught.value)
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)


def test_the_schema_failing_after_the_rows_is_reported_on_its_own(tmp_path: Path) -> None:
    """A file where the schemas folder should be: the rows are stored and the result carries
    the schema's error; once the blocker is gone the next run writes the schema."""
    lake = open_test_lake(str(tmp_path))
    blocker = tmp_path / "Instagram" / ACCOUNT / "schemas"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert (result.rows_added, result.rows_total) == (ROWS, ROWS)
    assert lake.read(SNAPSHOTS, ACCOUNT, DAY).height == ROWS
    assert result.schema_error is not None
    assert str(tmp_path / SCHEMA) in result.schema_error
    blocker.unlink()
    again = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    assert again.schema_error is None
    assert (tmp_path / SCHEMA).exists()


def test_storage_urls_pick_the_backend_and_reject_nonsense() -> None:
    """Folders and file:// are local, gs://bucket[/prefix] is GCS, other schemes are refused."""
    assert isinstance(open_test_lake("./data").backend, LocalBackend)
    gcs = open_test_lake("gs://chapala-bronze-bucket/lake/v1/").backend
    assert isinstance(gcs, GcsBackend)
    assert (gcs.bucket, gcs.prefix) == ("chapala-bronze-bucket", "lake/v1")
    assert gcs.url("Instagram/x") == "gs://chapala-bronze-bucket/lake/v1/Instagram/x"
    assert open_test_lake("gs://chapala-bronze-bucket").backend.url("a") == (
        "gs://chapala-bronze-bucket/a"
    )
    for bad in ("gs://", "gs:///prefix", "gs://Bad_Bucket", "s3://bucket"):
        with pytest.raises(StorageError):
            open_test_lake(bad)


def test_opening_a_gcs_lake_contacts_nothing() -> None:
    """open_test_lake() on gs:// creates no client: bucket problems surface per account on write."""
    storage = open_test_lake("gs://missing-bucket")
    assert isinstance(storage.backend, GcsBackend)
    assert storage.backend._client is None


def test_storage_is_a_context_manager_that_closes_its_backend(tmp_path: Path) -> None:
    """`with Lake(...)` closes the backend on exit."""
    closed: list[bool] = []

    class Spy(LocalBackend):
        def close(self) -> None:
            closed.append(True)

    with Lake(Spy(tmp_path)) as storage:
        storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert closed == [True]


def test_the_documented_polars_glob_reads_the_whole_local_lake(tmp_path: Path) -> None:
    """`pl.scan_parquet(".../Instagram/*/insights/stories/*/*.parquet")` reads every account and
    day, and nothing else (hidden lock and temp files, quarantined files are not picked up)."""
    storage = open_test_lake(str(tmp_path))
    storage.append(SNAPSHOTS, "NPI", DAY, snapshot_frame("run-a"))
    storage.append(SNAPSHOTS, "NPI", DAY, snapshot_frame("run-b"))
    storage.append(SNAPSHOTS, "LT", date(2026, 11, 25), snapshot_frame("run-c", account="LT"))
    folder = (tmp_path / PARQUET).parent
    (folder / f".{(tmp_path / PARQUET).name}.lock").write_bytes(b"")
    (folder / f".{(tmp_path / PARQUET).name}.abc.tmp").write_bytes(b"half")
    (folder / f"{(tmp_path / PARQUET).name}.corrupt-20261124T100000Z").write_bytes(b"junk")
    lake = pl.scan_parquet(f"{tmp_path}/Instagram/*/insights/stories/*/*.parquet").collect()
    assert lake.height == 3 * ROWS
    assert lake.schema == SNAPSHOTS.polars_schema
    latest = lake.sort("fetched_at").group_by("account", "story_id").last()
    assert latest.height == 2 * ROWS


def test_a_create_only_write_never_replaces_an_object_that_appeared_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generation 0 means "must not exist": when another writer creates the file between the
    check and the write (simulated: the check sees nothing), the write is a conflict and the
    other writer's bytes stay."""
    backend = LocalBackend(tmp_path)
    backend.write("x/once.json", b"first", if_generation=0)
    monkeypatch.setattr(LocalBackend, "_generation", lambda self, path: 0)
    with pytest.raises(ConflictError):
        backend.write("x/once.json", b"second", if_generation=0)
    assert (tmp_path / "x/once.json").read_bytes() == b"first"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["once.json"]  # no temp file left


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 2**20 + 7])
def test_a_file_reads_back_whole_with_the_generation_of_its_inode_and_time(
    tmp_path: Path, size: int
) -> None:
    """read() gives every byte, whatever the size (an empty file is bytes, not None), and the
    generation a write compares with; a folder at the key is a StorageError naming it."""
    backend = LocalBackend(tmp_path)
    data = os.urandom(size)
    backend.write("a/b.bin", data, if_generation=0)
    st = (tmp_path / "a/b.bin").stat()
    assert backend.read("a/b.bin") == (data, (st.st_ino << 64) | st.st_mtime_ns)
    with pytest.raises(StorageError, match=str(tmp_path / "a")):
        backend.read("a")
