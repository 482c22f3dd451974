"""The lake's contract, on both backends (a local folder, and GCS through the emulator): a merge
never drops a row or a column, a type conflict is refused, an unreadable file is moved aside, the
schema file's failure is reported on its own, and every wait ends with the run's deadline.

Files "of other versions" are written by hand, byte for byte, the way those versions or tools wrote
them: older (fewer columns, no or null `run_id`, nanosecond timestamps), newer (columns this
version does not know) and foreign (nothing in common with the table).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from ig_story_metrics.clock import Deadline
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage import Lake, StorageError
from ig_story_metrics.storage.layout import snapshot_key, snapshot_schema_key
from tests.storage.writer import ACCOUNT, DAY, ROWS, open_test_lake, snapshot_frame

KEY = snapshot_key(ACCOUNT, DAY)
SCHEMA_KEY = snapshot_schema_key(ACCOUNT, DAY)
QUARANTINE_AT = datetime(2026, 11, 24, 15, 31, 7, tzinfo=UTC)
FETCHED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["local", "gcs"])
def lake(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lake]:
    """An empty lake on each backend; its clock names quarantined files at QUARANTINE_AT."""
    if request.param == "local":
        url = str(tmp_path_factory.mktemp("lake"))
    else:
        url = f"gs://{request.getfixturevalue('bucket')}/lake"
    with open_test_lake(url) as opened:
        opened.clock = lambda: QUARANTINE_AT
        yield opened


def put(lake: Lake, frame: pl.DataFrame) -> bytes:
    """Store `frame` as the day's file, as another program would, and return its bytes."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    lake.backend.write(KEY, buffer.getvalue(), if_generation=0)
    return buffer.getvalue()


def stored(lake: Lake) -> pl.DataFrame:
    """The day's file as any Parquet reader sees it (not through the lake's own reader)."""
    data, _ = lake.backend.read(KEY)
    assert data is not None
    return pl.read_parquet(io.BytesIO(data))


def original_file() -> pl.DataFrame:
    """What the original system wrote: fewer columns, no run_id, nanosecond UTC timestamps."""
    return pl.DataFrame(
        {
            "account": [ACCOUNT] * 3,
            "story_id": ["old-1", "old-2", "old-3"],
            "posted_at": [FETCHED - timedelta(hours=h) for h in (1, 2, 3)],
            "fetched_at": [FETCHED] * 3,
            "views": pl.Series([10, None, 30], dtype=pl.Int32),
            "reach": [9, 19, 29],
        }
    ).with_columns(pl.col("posted_at", "fetched_at").cast(pl.Datetime("ns", "UTC")))


def test_rows_of_the_original_system_without_run_id_survive_every_append(lake: Lake) -> None:
    """A file without a run_id column keeps all its rows and values through two appends and a
    re-run; the columns it lacks are null in its rows."""
    put(lake, original_file())
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    after = stored(lake)
    assert result.rows_total == after.height == 3 + 2 * ROWS
    old = after.filter(pl.col("story_id").str.starts_with("old-"))
    assert old.get_column("views").to_list() == [10, None, 30]
    assert old.get_column("reach").to_list() == [9, 19, 29]
    assert old.get_column("fetched_at").to_list() == [FETCHED] * 3
    assert old.get_column("run_id").null_count() == 3
    assert old.get_column("insights_status").null_count() == 3
    assert after.filter(pl.col("run_id") == "run-a").height == ROWS
    assert after.schema == SNAPSHOTS.polars_schema


def test_rows_with_a_null_run_id_never_match_a_run(lake: Lake) -> None:
    """Null run_ids (written by hand or another tool) are kept; only the re-run's rows go."""
    orphans = snapshot_frame("x", rows=3).with_columns(pl.lit(None, pl.String).alias("run_id"))
    put(
        lake, pl.concat([orphans, snapshot_frame("run-a", rows=2), snapshot_frame("run-b", rows=2)])
    )
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    after = stored(lake)
    counts = dict(after.group_by("run_id").len().iter_rows())
    assert counts == {None: 3, "run-a": ROWS, "run-b": 2}


def test_columns_of_a_newer_version_are_kept_in_old_rows_and_null_in_new_ones(lake: Lake) -> None:
    """Columns this version does not declare keep their values and types, after the declared
    columns in their stored order; the new rows hold null there; the schema JSON lists them."""
    newer = snapshot_frame("run-new", rows=2).with_columns(
        pl.Series("future_struct", [{"a": 1, "b": "x"}, {"a": 2, "b": None}]),
        pl.lit("note").alias("future_note"),
        pl.Series("future_metric", [7, None], dtype=pl.Int16),
    )
    put(lake, newer)
    result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    after = stored(lake)
    extras = ["future_struct", "future_note", "future_metric"]
    assert after.columns == [*SNAPSHOTS.column_names, *extras]
    assert after.schema["future_metric"] == pl.Int16
    assert after.schema["future_struct"] == newer.schema["future_struct"]
    old = after.filter(pl.col("run_id") == "run-new")
    assert old.get_column("future_metric").to_list() == [7, None]
    assert old.get_column("future_struct").to_list() == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    new = after.filter(pl.col("run_id") == "run-a")
    assert new.select(extras).null_count().row(0) == (ROWS, ROWS, ROWS)
    assert result.schema_error is None
    schema = json.loads(lake.backend.read(SCHEMA_KEY)[0] or b"")
    assert list(schema["properties"])[-3:] == extras
    assert schema["properties"]["future_metric"]["x-parquet-type"] == "Int16"
    assert lake.read(SNAPSHOTS, ACCOUNT, DAY).columns == after.columns


def test_the_schema_json_keeps_what_a_newer_version_wrote_about_its_columns(lake: Lake) -> None:
    """A property a newer version put in the schema JSON is kept as it was (schemas only grow)."""
    newer = SNAPSHOTS.json_schema()
    newer["properties"]["future_note"] = {"type": ["string", "null"], "description": "by v9"}
    lake.backend.write(SCHEMA_KEY, json.dumps(newer).encode(), if_generation=0)
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    schema = json.loads(lake.backend.read(SCHEMA_KEY)[0] or b"")
    assert schema["properties"]["future_note"] == {
        "type": ["string", "null"],
        "description": "by v9",
    }
    assert {k: v for k, v in schema["properties"].items() if k != "future_note"} == (
        SNAPSHOTS.json_schema()["properties"]
    )


def test_a_foreign_file_keeps_every_row_and_column(lake: Lake) -> None:
    """A Parquet file sharing no column with the table: its rows and columns stay, beside ours."""
    put(lake, pl.DataFrame({"name": ["a", "b"], "score": [1.5, None]}))
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    after = stored(lake)
    assert after.columns == [*SNAPSHOTS.column_names, "name", "score"]
    assert after.height == 2 + ROWS
    assert after.get_column("name").to_list()[:2] == ["a", "b"]
    assert after.get_column("score").to_list()[:2] == [1.5, None]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("views", pl.lit("120")),  # text, even text that looks like a number
        ("views", pl.lit(1.0)),  # a float in an int column
        ("run_id", pl.lit(7)),
        ("fetched_at", pl.lit(datetime(2026, 11, 24, 9))),  # naive: no time zone
        ("fetched_at", pl.lit("2026-11-24T09:00:00Z")),
        ("story_age_hours", pl.lit(True)),
    ],
)
def test_a_type_conflict_is_refused_and_the_file_left_as_it_is(
    lake: Lake, column: str, value: pl.Expr
) -> None:
    """A declared column stored in another type: StorageError naming file and column; the bytes
    and generation of the file are unchanged; the stored rows are not coerced."""
    original = put(lake, snapshot_frame("run-old", rows=2).with_columns(value.alias(column)))
    before = lake.backend.read(KEY)
    with pytest.raises(StorageError) as caught:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    message = str(caught.value)
    assert lake.url(KEY) in message
    assert f"column {column!r} is stored as" in message
    assert "left as it is" in message
    assert "\n" not in message
    assert lake.backend.read(KEY) == before
    assert before[0] == original


def test_lossless_narrower_types_are_widened_not_refused(lake: Lake) -> None:
    """Int32 counts, Float32 ages and nanosecond times convert to the declared types unchanged."""
    narrow = snapshot_frame("run-old", rows=2).with_columns(
        pl.col("views").cast(pl.Int32),
        pl.col("story_age_hours").cast(pl.Float32),
        pl.col("fetched_at").cast(pl.Datetime("ns", "UTC")),
    )
    put(lake, narrow)
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    after = stored(lake)
    assert after.schema == SNAPSHOTS.polars_schema
    old = after.filter(pl.col("run_id") == "run-old")
    assert old.get_column("views").to_list() == narrow.get_column("views").to_list()
    assert old.get_column("fetched_at").to_list() == narrow.get_column("fetched_at").to_list()


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_an_unreadable_file_is_moved_aside_and_the_day_starts_afresh(
    lake: Lake, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The unreadable file goes, byte for byte, to `{file}.corrupt-{UTC time}` beside it; an
    ERROR names both; the run's rows are stored; the result and `quarantined()` list it."""
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    good = lake.backend.read(KEY)[0] or b""
    bad = {"truncated": good[:-100], "random bytes": bytes(range(256)) * 4, "empty": b""}[damage]
    _, generation = lake.backend.read(KEY)
    lake.backend.write(KEY, bad, if_generation=generation)
    with caplog.at_level(logging.ERROR, logger="ig_story_metrics.storage"):
        result = lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    aside = f"{KEY}.corrupt-20261124T153107Z"
    assert result.quarantined == (lake.url(aside),)
    assert lake.backend.read(aside)[0] == bad
    assert stored(lake).get_column("run_id").to_list() == ["run-b"] * ROWS
    assert (result.rows_added, result.rows_total) == (ROWS, ROWS)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert lake.url(KEY) in record.getMessage()
    assert lake.url(aside) in record.getMessage()
    assert lake.quarantined(SNAPSHOTS, ACCOUNT) == [lake.url(aside)]
    assert lake.quarantined(SNAPSHOTS, "LT") == []


def test_quarantined_lists_every_day_of_the_account_and_nothing_else(lake: Lake) -> None:
    """Files moved aside on two days are listed, the daily files and other accounts' are not."""
    later = DAY + timedelta(days=1)
    for day in (DAY, later):
        lake.backend.write(snapshot_key(ACCOUNT, day), b"not parquet", if_generation=0)
        lake.append(SNAPSHOTS, ACCOUNT, day, snapshot_frame("run-a"))
    lake.append(SNAPSHOTS, "LT", DAY, snapshot_frame("run-a", account="LT"))
    assert lake.quarantined(SNAPSHOTS, ACCOUNT) == [
        lake.url(f"{snapshot_key(ACCOUNT, day)}.corrupt-20261124T153107Z") for day in (DAY, later)
    ]
    assert lake.quarantined(SNAPSHOTS, "LT") == []


def test_a_spent_deadline_writes_nothing(lake: Lake) -> None:
    """With the run's time budget spent, append raises at once and leaves the lake as it was."""
    with pytest.raises(StorageError) as caught:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"), deadline=Deadline(0))
    assert "time budget" in str(caught.value)
    assert lake.url(KEY) in str(caught.value)
    assert lake.backend.read(KEY) == (None, 0)


def test_a_retried_run_after_a_schema_failure_does_not_duplicate(lake: Lake) -> None:
    """The rows a run stored before its schema failed are replaced, not doubled, by a retry."""
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    lake.backend.write(SCHEMA_KEY, b"{", if_generation=lake.backend.read(SCHEMA_KEY)[1])
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    assert stored(lake).height == ROWS
    assert json.loads(lake.backend.read(SCHEMA_KEY)[0] or b"") == SNAPSHOTS.json_schema()


def test_a_merge_keeps_every_other_row_in_order_and_replaces_only_the_re_runs() -> None:
    """`merge` alone, every case of one file at once: rows of other runs, a null run_id, and a
    column this version does not know are kept in their stored order; only the rows of the run
    being stored again go, and its new rows come last with the unknown column null."""
    from ig_story_metrics.storage.merge import merge  # noqa: PLC0415

    stored = pl.concat(
        [
            snapshot_frame("run-a", rows=2),
            snapshot_frame("run-b", rows=2),
            snapshot_frame("x", rows=1).with_columns(pl.lit(None, pl.String).alias("run_id")),
            snapshot_frame("run-c", rows=2),
        ]
    ).with_columns(pl.Series("from_the_future", [1, 2, 3, 4, 5, 6, 7], dtype=pl.Int16))
    again = snapshot_frame("run-b", rows=3)
    merged = merge(SNAPSHOTS, stored, again, "test")
    assert merged.get_column("run_id").to_list() == [
        "run-a", "run-a", None, "run-c", "run-c", "run-b", "run-b", "run-b"
    ]  # fmt: skip
    assert merged.get_column("from_the_future").to_list() == [1, 2, 5, 6, 7, None, None, None]
    assert merged.columns == [*SNAPSHOTS.column_names, "from_the_future"]
    fresh = merge(SNAPSHOTS, stored, snapshot_frame("run-d", rows=1), "test")
    assert fresh.height == stored.height + 1
    assert fresh.get_column("from_the_future").to_list()[:-1] == list(range(1, 8))
