"""Reading every account's daily files back, from a local folder and from a bucket (fake-gcs-server
through the official client), many files at once as each alone, and the audit over a gs:// lake."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from ig_story_metrics.jobs.audit import audit
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage import Lake, StorageError, scan
from ig_story_metrics.storage import lake as lake_module
from ig_story_metrics.storage.layout import snapshot_key
from ig_story_metrics.storage.scan import (
    PARSE_CHUNK,
    day_range,
    read_partitions,
    read_snapshots,
    snapshot_accounts,
)
from tests.storage.conftest import FaultProxy
from tests.storage.overlap import paused
from tests.storage.writer import DAY, ROWS, open_test_lake, snapshot_frame


def fill(lake: Lake) -> None:
    """NPI on DAY, LT on DAY and the day after; a file no account owns is ignored."""
    lake.append(SNAPSHOTS, "NPI", DAY, snapshot_frame("npi-1"))
    lake.append(SNAPSHOTS, "LT", DAY, snapshot_frame("lt-1", 3, account="LT"))
    lake.append(SNAPSHOTS, "LT", DAY + timedelta(days=1), snapshot_frame("lt-2", 2, account="LT"))
    lake.backend.write("Instagram/not an account/x.txt", b"x", if_generation=0)


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_accounts_and_days_are_read_back_from_the_lake(
    where: str, request: pytest.FixtureRequest
) -> None:
    """The accounts are the lake's folders (valid names only); every file of the chosen days is
    read, and a day without a file is simply absent."""
    lake: Lake = request.getfixturevalue(where)
    assert snapshot_accounts(lake) == []
    fill(lake)
    assert snapshot_accounts(lake) == ["LT", "NPI"]
    days = day_range(DAY - timedelta(days=1), DAY + timedelta(days=1))
    frame = read_snapshots(lake, days)
    assert frame.schema == SNAPSHOTS.polars_schema
    counts = dict(frame.group_by("run_id").len().iter_rows())
    assert counts == {"npi-1": ROWS, "lt-1": 3, "lt-2": 2}
    assert read_snapshots(lake, [DAY], ["LT"]).height == 3


def test_audit_reads_a_gs_lake(gcs_lake: Lake) -> None:
    """`audit` over a bucket: the accounts found there, their stories seen per day."""
    fill(gcs_lake)
    now = datetime(DAY.year, DAY.month, DAY.day, 23, 0, tzinfo=UTC)
    report = audit(gcs_lake, now=now, days=1)
    assert report.storage_url.startswith("gs://")
    seen = {c.account: c.stories_seen for c in report.coverage}
    assert seen == {"LT": 3, "NPI": ROWS}


def test_unreadable_file_is_a_storage_error(local_lake: Lake) -> None:
    """A daily file that is not Parquet stops the read with a message naming it."""
    local_lake.backend.write(
        "Instagram/NPI/insights/stories/2026-11-24/instagram_story_metrics_2026-11-24.parquet",
        b"garbage",
        if_generation=0,
    )
    with pytest.raises(StorageError, match="not a readable Parquet file"):
        read_snapshots(local_lake, [DAY])


def odd_lake(lake: Lake) -> list[tuple[str, date]]:
    """Files of every kind a partition can be: this version's (NPI), one written before the
    `capture` column (LT), one with a column no version declares (MD), none (RE), not Parquet
    (SML). The parts to read, in an order that is not the accounts'."""
    lake.append(SNAPSHOTS, "NPI", DAY, snapshot_frame("npi-1"))
    for account, frame in (
        ("LT", snapshot_frame("lt-1", 3, account="LT").drop("capture")),
        ("MD", snapshot_frame("md-1", 2, account="MD").with_columns(later=pl.lit(7))),
    ):
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        lake.backend.write(snapshot_key(account, DAY), buffer.getvalue(), if_generation=0)
    lake.backend.write(snapshot_key("SML", DAY), b"not parquet", if_generation=0)
    later = DAY + timedelta(days=1)
    return [("MD", DAY), ("RE", DAY), ("SML", DAY), ("NPI", later), ("LT", DAY), ("NPI", DAY)]


@pytest.mark.parametrize("chunk", [2, PARSE_CHUNK])
@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_partitions_read_together_are_each_as_read_alone(
    where: str, chunk: int, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every part comes back as `Lake.read` gives it alone (same columns, types and rows), in the
    order asked; the file that is not Parquet is its own StorageError, whichever chunk holds it."""
    lake: Lake = request.getfixturevalue(where)
    monkeypatch.setattr(scan, "PARSE_CHUNK", chunk)
    parts = odd_lake(lake)
    found = read_partitions(lake, SNAPSHOTS, parts)
    assert len(found) == len(parts)
    for part, frame in zip(parts, found, strict=True):
        if part[0] == "SML":
            assert isinstance(frame, StorageError)
            assert "not a readable Parquet file" in str(frame)
            assert lake.url(snapshot_key(*part)) in str(frame)
            continue
        assert isinstance(frame, pl.DataFrame), frame
        alone = lake.read(SNAPSHOTS, *part)
        assert frame.schema == alone.schema
        assert frame.equals(alone)
    heights = [f.height if isinstance(f, pl.DataFrame) else None for f in found]
    assert heights == [2, 0, None, 0, 3, ROWS]
    md, lt = found[0], found[4]
    assert isinstance(md, pl.DataFrame)
    assert md["later"].to_list() == [7, 7]
    assert isinstance(lt, pl.DataFrame)
    assert lt["capture"].to_list() == [None] * 3


def test_good_files_are_decoded_by_one_query_a_bad_one_each_alone(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files that all decode take no read of their own; a chunk with a bad file is decoded file
    by file, so its good files still come back."""
    alone: list[bytes] = []
    parse = lake_module._parse

    def counted(data: bytes) -> tuple[pl.DataFrame | None, str]:
        alone.append(data)
        return parse(data)

    monkeypatch.setattr(lake_module, "_parse", counted)
    parts = odd_lake(local_lake)
    good = [part for part in parts if part[0] != "SML"]
    assert all(isinstance(f, pl.DataFrame) for f in read_partitions(local_lake, SNAPSHOTS, good))
    assert alone == []
    found = read_partitions(local_lake, SNAPSHOTS, parts)
    assert len(alone) == 4  # the four files: MD, SML, LT, NPI
    assert [type(f).__name__ for f in found] == ["DataFrame"] * 2 + ["StorageError"] + [
        "DataFrame"
    ] * 3


def test_a_bucket_read_that_fails_fails_its_own_part(proxy: FaultProxy, bucket: str) -> None:
    """A download the bucket refuses is that part's StorageError; the others are read, and
    `read_snapshots` (which needs them all) raises it."""
    with open_test_lake(f"gs://{bucket}") as lake:
        fill(lake)
        proxy.fail("GET", "status", times=-1, status=403, path="Instagram%2FLT%2F")
        found = read_partitions(lake, SNAPSHOTS, [("NPI", DAY), ("LT", DAY)])
        npi, lt = found
        assert isinstance(npi, pl.DataFrame)
        assert npi.height == ROWS
        assert isinstance(lt, StorageError)
        assert "permission denied (403)" in str(lt)
        with pytest.raises(StorageError, match="permission denied"):
            read_snapshots(lake, [DAY])


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_a_buckets_files_are_fetched_side_by_side(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket's objects are downloaded several at a time (a round trip each: here a pause of
    50 ms), a local folder's files one after another on the calling thread; the parts are the
    same either way, in the order asked."""
    lake: Lake = request.getfixturevalue(where)
    fill(lake)
    overlap = paused(monkeypatch, lake.backend, "read")
    parts = [
        (name, day) for day in day_range(DAY, DAY + timedelta(days=2)) for name in ("LT", "NPI")
    ]
    heights = [
        f.height for f in read_partitions(lake, SNAPSHOTS, parts) if isinstance(f, pl.DataFrame)
    ]
    assert heights == [3, ROWS, 2, 0, 0, 0]
    if where == "gcs_lake":
        assert overlap.peak > 1
    else:
        assert overlap.on_caller_thread_alone()
