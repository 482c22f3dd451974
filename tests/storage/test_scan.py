"""Reading every account's daily files back, from a local folder and from a bucket (fake-gcs-server
through the official client), and the audit over a gs:// lake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ig_story_metrics.jobs.audit import audit
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage import Lake, StorageError
from ig_story_metrics.storage.scan import day_range, read_snapshots, snapshot_accounts
from tests.storage.writer import DAY, ROWS, snapshot_frame


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
