"""STORAGE_URL is parsed once, at start, strictly: the accepted forms, the refused ones (a
one-line error and exit 2 before any Graph call), local paths that cannot be a folder, and a
local lake refused on Cloud Functions / Cloud Run (K_SERVICE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ig_story_metrics.errors import SetupError
from ig_story_metrics.model.location import StorageLocation, parse_storage_url
from ig_story_metrics.settings import load_settings
from ig_story_metrics.storage import StorageError, open_lake
from ig_story_metrics.storage.gcs import GcsBackend
from ig_story_metrics.storage.local import LocalBackend

from .conftest import run_cli, write_accounts

REFUSED = [
    "gs:/bucket/p",
    "gs:bucket",
    "file:/x",
    "file://localhost/x",
    "file://x",
    " ",
    " ./data",
    "./data\n",
    "gs://",
    "gs:///prefix",
    "gs://Bad_Bucket",
    "gs://ab",
    "gs://192.168.0.1",
    "gs://google-lake",
    "gs://bucket//prefix",
    "gs://bucket/../prefix",
    "s3://bucket/prefix",
    "http://example.com/lake",
    "data:lake",
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, StorageLocation("local", "./data", path="./data")),
        ("", StorageLocation("local", "./data", path="./data")),
        ("data", StorageLocation("local", "data", path="data")),
        ("./gs:bucket", StorageLocation("local", "./gs:bucket", path="./gs:bucket")),
        ("/srv/lake", StorageLocation("local", "/srv/lake", path="/srv/lake")),
        ("~/lake", StorageLocation("local", "~/lake", path="~/lake")),
        (
            "file:///srv/my%20lake",
            StorageLocation("local", "file:///srv/my%20lake", path="/srv/my lake"),
        ),
        (
            "gs://chapala-bronze-bucket",
            StorageLocation("gcs", "gs://chapala-bronze-bucket", bucket="chapala-bronze-bucket"),
        ),
        (
            "gs://b_1.example/lake/v1/",
            StorageLocation(
                "gcs", "gs://b_1.example/lake/v1/", bucket="b_1.example", prefix="lake/v1"
            ),
        ),
    ],
)
def test_the_accepted_forms(value: str | None, expected: StorageLocation) -> None:
    """Unset/empty is ./data; folders, file:///abs and gs://bucket[/prefix] parse as documented."""
    assert parse_storage_url(value) == expected


@pytest.mark.parametrize("value", REFUSED)
def test_anything_else_is_refused_in_one_line_naming_the_value(value: str) -> None:
    """Malformed URLs, other schemes, blanks and bad bucket names: a one-line error with the value,
    from the parser, the settings and open_lake alike."""
    with pytest.raises(ValueError, match="STORAGE_URL") as parsed:
        parse_storage_url(value)
    assert repr(value) in str(parsed.value)
    assert "\n" not in str(parsed.value)
    with pytest.raises(SetupError) as loaded:
        load_settings({"STORAGE_URL": value})
    assert str(loaded.value) == str(parsed.value)
    with pytest.raises(StorageError):
        open_lake(value)


def test_the_parsed_location_opens_the_matching_backend(tmp_path: Path) -> None:
    """settings.storage drives open_lake: a folder is the local backend there, a bucket GCS."""
    local = load_settings({"STORAGE_URL": f"file://{tmp_path}"})
    backend = open_lake(local.storage).backend
    assert isinstance(backend, LocalBackend)
    assert backend.root == tmp_path
    bucket = load_settings({"STORAGE_URL": "gs://chapala-bronze-bucket/bronze"})
    gcs = open_lake(bucket.storage).backend
    assert isinstance(gcs, GcsBackend)
    assert (gcs.bucket, gcs.prefix) == ("chapala-bronze-bucket", "bronze")


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("file", "is a file, not a folder"),
        ("under a file", "a part of"),
        ("device", "is a device or special file"),
    ],
)
def test_a_local_path_that_cannot_be_a_folder_is_refused_at_start(
    tmp_path: Path, kind: str, problem: str
) -> None:
    """A file, a path through a file, or a device as the lake folder: SetupError at load."""
    (tmp_path / "f").write_text("x")
    path = {"file": tmp_path / "f", "under a file": tmp_path / "f" / "lake"}.get(
        kind, Path("/dev/null")
    )
    with pytest.raises(SetupError) as caught:
        load_settings({"STORAGE_URL": str(path)})
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_folder_is_fine_it_is_created_on_the_first_write(tmp_path: Path) -> None:
    """A folder that does not exist yet is accepted (the lake creates it)."""
    assert load_settings({"STORAGE_URL": str(tmp_path / "new" / "lake")}).storage.is_local


@pytest.mark.parametrize("value", ["", "./data", "/srv/lake", "file:///srv/lake"])
def test_a_local_lake_is_refused_on_cloud_functions_and_cloud_run(value: str) -> None:
    """With K_SERVICE set (the platform sets it) a local STORAGE_URL is a SetupError: the
    container's disk is lost after the run."""
    with pytest.raises(SetupError) as caught:
        load_settings({"STORAGE_URL": value, "K_SERVICE": "ig-story-metrics-fetcher-prod"})
    assert "K_SERVICE" in str(caught.value)
    assert "gs://BUCKET" in str(caught.value)
    on_cloud = load_settings({"STORAGE_URL": "gs://lake-bucket", "K_SERVICE": "fetcher"})
    assert on_cloud.storage.bucket == "lake-bucket"


@pytest.mark.parametrize(
    ("value", "more"),
    [
        ("gs:/bucket/p", {}),
        ("file://localhost/x", {}),
        (" ", {}),
        ("LAKEFILE", {}),
        ("./data", {"K_SERVICE": "fetcher"}),
    ],
)
def test_the_cli_refuses_at_start_with_exit_2(
    tmp_path: Path, value: str, more: dict[str, str]
) -> None:
    """`run` with a refused STORAGE_URL: exit 2, one line on stderr, no traceback, nothing written
    (the Graph API URL is a closed port: a run that started would fail with exit 1 instead)."""
    (tmp_path / "LAKEFILE").write_text("a file, not a folder")
    accounts = write_accounts(tmp_path / "accounts.toml", {"NPI": "17841400000000001"})
    env = {
        "IG_GRAPH_API_URL": "http://127.0.0.1:9",
        "IG_ACCESS_TOKEN": "token-not-used",
        "IG_ACCOUNTS_FILE": str(accounts),
        "STORAGE_URL": value,
        **more,
    }
    done = run_cli(["run", "NPI"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "STORAGE_URL" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LAKEFILE", "accounts.toml"]
