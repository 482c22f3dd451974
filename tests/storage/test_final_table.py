"""The final-values table over a real lake (a local folder and fake-gcs-server through the
official client): snapshots and webhook deliveries in, one row per expired story out, partitions
replaced whole, the same bytes on a re-run; write-once deliveries on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ig_story_metrics.jobs.audit import audit
from ig_story_metrics.jobs.finalize import finalize
from ig_story_metrics.jobs.webhooks import account_deliveries, read_deliveries, store_delivery
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.final import STORY_FINAL
from ig_story_metrics.model.snapshot import SNAPSHOTS, snapshot_row
from ig_story_metrics.model.story import Story
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.blobs import put_once
from ig_story_metrics.storage.layout import table_key
from tests.storage.overlap import paused

NPI = Account("NPI", "17841400000000001")
ACCOUNTS = {NPI.name: NPI.ig_user_id}
P = datetime(2026, 11, 10, tzinfo=UTC)  # the posted date of every story below
NOW = P + timedelta(days=2, hours=3)


def snap(story: Story, at: datetime, reach: int | None, capture: str = "hourly") -> dict[str, Any]:
    return snapshot_row(
        account="NPI",
        ig_user_id=NPI.ig_user_id,
        story=story,
        fetched_at=at,
        run_id=f"run-{at:%d%H%M}",
        api_version="v25.0",
        metrics={"reach": reach, "views": None if reach is None else reach * 2},
        status="ok" if reach is not None else "not_enough_viewers",
        capture=capture,  # type: ignore[arg-type]
    )


def store_snapshots(lake: Lake, rows: list[dict[str, Any]]) -> None:
    frame = SNAPSHOTS.frame(rows)
    for (day,), part in frame.group_by(pl.col("fetched_at").dt.date()):
        lake.append(SNAPSHOTS, "NPI", day, part)  # type: ignore[arg-type]


def delivery(media: str, sent: datetime, **values: int) -> bytes:
    change = {"field": "story_insights", "value": {"media_id": media, **values}}
    entry = {"id": NPI.ig_user_id, "time": int(sent.timestamp()), "changes": [change]}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def fill(lake: Lake) -> None:
    """Three stories posted on P: one crossing midnight (23:00, swept 5 minutes before expiry,
    -1 reach from the webhook, delivered twice), one last read 40 minutes before expiry, and one
    known only from the webhook; a live story (not expired by NOW) is left out."""
    late = Story("s-midnight", P + timedelta(hours=23), "IMAGE", "STORY")
    early = Story("s-early", P + timedelta(hours=2), "VIDEO", "STORY")
    live = Story("s-live", NOW - timedelta(hours=1))
    rows = [snap(late, late.posted_at + timedelta(minutes=20 + 60 * h), 10 + h) for h in range(23)]
    rows.append(snap(late, late.posted_at + timedelta(hours=23, minutes=55), None, "sweep"))
    rows += [snap(early, early.posted_at + timedelta(minutes=20 + 60 * h), 5) for h in range(24)]
    rows.append(snap(live, NOW - timedelta(minutes=30), 3))
    store_snapshots(lake, rows)
    body = delivery("s-midnight", P + timedelta(days=1, hours=24), reach=-1, exits=4, views=70)
    for _ in range(2):
        store_delivery(lake, [NPI], body, P + timedelta(days=2, minutes=1))
    only = delivery("s-hook", P + timedelta(days=1, hours=3), reach=40, replies=2, new_key=9)
    store_delivery(lake, [NPI], only, P + timedelta(days=1, hours=3))


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_finalize_builds_one_row_per_expired_story(
    where: str, request: pytest.FixtureRequest
) -> None:
    """Midnight-crossing, incomplete and webhook-only stories each get one row with the final
    values; -1 is null with a note; a re-run writes nothing and gives the same bytes."""
    lake: Lake = request.getfixturevalue(where)
    fill(lake)
    result = finalize(lake, ACCOUNTS, NOW, days=2)
    key = table_key(STORY_FINAL, "NPI", P.date())
    assert key == "tables/story_final/account=NPI/posted_date=2026-11-10/story_final.parquet"
    stored, _ = lake.backend.read(key)
    assert stored is not None
    frame = lake.read(STORY_FINAL, "NPI", P.date())
    rows = {r["story_id"]: r for r in frame.to_dicts()}
    assert set(rows) == {"s-midnight", "s-early", "s-hook"}
    mid = rows["s-midnight"]
    assert (mid["snapshots"], mid["sweep_snapshots"], mid["reach"]) == (24, 1, 32)
    assert mid["last_snapshot_at"] == P + timedelta(hours=46, minutes=55)
    assert mid["final_status"] == "not_enough_viewers"
    assert (mid["webhook_reach"], mid["webhook_exits"], mid["webhook_views"]) == (None, 4, 70)
    assert "reach: fewer than 5" in mid["webhook_note"]
    assert (mid["webhook_deliveries"], mid["final_source"], mid["complete"]) == (
        1,
        "poll+webhook",
        True,
    )
    early = rows["s-early"]
    assert (early["final_source"], early["complete"], early["webhook_reach"]) == (
        "poll",
        False,
        None,
    )
    hook = rows["s-hook"]
    assert (hook["final_source"], hook["complete"], hook["snapshots"]) == ("webhook", True, 0)
    assert (hook["webhook_reach"], hook["reach"], hook["posted_at"]) == (40, None, None)
    assert json.loads(hook["webhook_other"]) == {"new_key": 9}
    assert result.complete == 2
    assert result.stories == 3
    again = finalize(lake, ACCOUNTS, NOW, days=2)
    assert again.written == []
    assert lake.backend.read(key)[0] == stored
    schema = json.loads(lake.backend.read("tables/story_final/_schema.json")[0] or b"")
    assert "webhook_reach" in schema["properties"]


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_partition_is_replaced_whole(where: str, request: pytest.FixtureRequest) -> None:
    """A rebuild replaces a partition's file: a row that no longer belongs is gone, the new one is
    there, the file is still one readable Parquet file."""
    lake: Lake = request.getfixturevalue(where)
    old = STORY_FINAL.frame(
        [
            {
                "ig_user_id": "1",
                "story_id": "gone",
                "snapshots": 0,
                "sweep_snapshots": 0,
                "webhook_deliveries": 0,
                "final_source": "none",
                "complete": False,
            }
        ]
    )
    assert lake.replace_partition(STORY_FINAL, "NPI", P.date(), old)
    fill(lake)
    finalize(lake, ACCOUNTS, NOW, days=2)
    ids = set(lake.read(STORY_FINAL, "NPI", P.date())["story_id"])
    assert "gone" not in ids
    assert "s-midnight" in ids


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_put_once_never_overwrites(where: str, request: pytest.FixtureRequest) -> None:
    """A write-once object is created once; a second put of other bytes is refused, the first
    bytes stay."""
    lake: Lake = request.getfixturevalue(where)
    assert put_once(lake.backend, "x/once.json", b"first") is True
    assert put_once(lake.backend, "x/once.json", b"second") is False
    assert lake.backend.read("x/once.json")[0] == b"first"


def test_finalize_over_no_lake_writes_nothing(local_lake: Lake) -> None:
    """No snapshots and no deliveries: no partition, no error."""
    result = finalize(local_lake, ACCOUNTS, NOW, days=3)
    assert (result.stories, result.written) == (0, [])


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_deliveries_of_several_days_are_read_with_one_listing(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deliveries of the days asked for, from one listing of the account's deliveries (a
    listing per day cost a request per day and account, every run and sweep): a day between
    them that was not asked for, the days around them and another account's stay out."""
    lake: Lake = request.getfixturevalue(where)
    other = Account("LT", "17841400000000002")
    for n in range(5):
        received = P + timedelta(days=n, hours=1)
        store_delivery(lake, [NPI], delivery(f"m{n}", received, reach=n), received)
    store_delivery(lake, [other], delivery("lt", P, reach=1).replace(b"00001", b"00002"), P)
    listings: list[str] = []
    keys = lake.backend.keys

    def counted(prefix: str, **options: Any) -> list[str]:
        listings.append(prefix)
        return keys(prefix, **options)

    monkeypatch.setattr(lake.backend, "keys", counted)
    found = read_deliveries(lake, "NPI", [P.date() + timedelta(days=n) for n in (3, 1)])
    assert sorted(i.media_id for i in found) == ["m1", "m3"]
    assert len(listings) == 1
    assert read_deliveries(lake, "NPI", []) == []


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_a_bucket_lists_the_accounts_deliveries_side_by_side(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each account's deliveries take a listing: a bucket's are sent several at a time (a round
    trip each; the final values of a fleet's run take a hundred accounts at a time), a local
    folder's on the calling thread. Each listing here pauses 50 ms, as a bucket's round trip
    would; the deliveries found are the same, each account's own, in the order asked."""
    lake: Lake = request.getfixturevalue(where)
    accounts = {f"A{n}": f"1784140000000010{n}" for n in range(6)}
    for n, (name, user) in enumerate(accounts.items()):
        body = delivery(f"m{n}", P, reach=n).replace(NPI.ig_user_id.encode(), user.encode())
        store_delivery(lake, [Account(name, user)], body, P)
    store_delivery(lake, [Account("A0", accounts["A0"])], delivery("npi", P, reach=9), P)
    overlap = paused(monkeypatch, lake.backend, "keys")
    found = account_deliveries(lake, accounts, [P.date()])
    assert [i.media_id for i in found] == [f"m{n}" for n in range(6)]  # not NPI's, under A0
    if where == "gcs_lake":
        assert overlap.peak > 1
    else:
        assert overlap.on_caller_thread_alone()


@pytest.mark.parametrize("where", ["local_lake", "gcs_lake"])
def test_the_audit_reads_the_final_rows_back(where: str, request: pytest.FixtureRequest) -> None:
    """The audit reads the final table from either backend: both expired stories are named
    until `finalize` writes their partition, none after (the live one is not due)."""
    lake: Lake = request.getfixturevalue(where)
    fill(lake)
    before = audit(lake, now=NOW, days=2)
    assert {s for c in before.coverage for s in c.missing_final_rows} == {"s-early", "s-midnight"}
    finalize(lake, ACCOUNTS, NOW, days=2)
    after = audit(lake, now=NOW, days=2)
    assert after.expired == 2
    assert after.missing_final_rows == 0
