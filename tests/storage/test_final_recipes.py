"""README's "Final values" recipes, run as written with DuckDB and Polars over a final table that
`finalize` built next to a partition of an older schema; the BigQuery definition checked against
the layout the lake writes."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ig_story_metrics.jobs.finalize import finalize
from ig_story_metrics.model.final import STORY_FINAL
from ig_story_metrics.storage import open_lake
from ig_story_metrics.storage.layout import table_key
from tests.storage.test_final_table import ACCOUNTS, NOW, P, fill

from .test_read_recipes import blocks

OLD_DAY = date(2026, 10, 1)


@pytest.fixture
def final_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`./data` with NPI's table built by finalize, and an LT partition written by an older
    version (without the webhook columns)."""
    monkeypatch.chdir(tmp_path)
    with open_lake("data") as lake:
        fill(lake)
        finalize(lake, ACCOUNTS, NOW, days=2)
    old = tmp_path / "data" / table_key(STORY_FINAL, "LT", OLD_DAY)
    old.parent.mkdir(parents=True)
    pl.DataFrame(
        {"ig_user_id": ["2"], "story_id": ["old-1"], "reach": [7], "complete": [False]}
    ).write_parquet(old)
    return tmp_path / "data"


def check(frame: pl.DataFrame) -> None:
    """Every story of both schema versions, with its partition columns from the folder names."""
    rows = {r["story_id"]: r for r in frame.to_dicts()}
    assert set(rows) == {"s-midnight", "s-early", "s-hook", "old-1"}
    assert (rows["old-1"]["account"], str(rows["old-1"]["posted_date"])) == ("LT", "2026-10-01")
    assert (rows["s-hook"]["account"], str(rows["s-hook"]["posted_date"])) == ("NPI", str(P.date()))
    assert rows["old-1"]["webhook_reach"] is None
    assert rows["s-midnight"]["final_source"] == "poll+webhook"


def test_duckdb_recipe(final_lake: Path) -> None:
    """The README's DuckDB query (hive_partitioning, union_by_name), as written."""
    (query,) = blocks("README.md", "sql", "data/tables/story_final")
    result = duckdb.connect().sql(query.strip().rstrip(";"))
    check(pl.DataFrame(result.fetchall(), schema=result.columns, orient="row"))


def test_polars_recipe(final_lake: Path) -> None:
    """The README's Polars recipe, as written: every row, and the share of complete stories."""
    (code,) = blocks("README.md", "python", "data/tables/story_final")
    scope: dict[str, object] = {}
    exec(code, scope)  # noqa: S102 - our own documentation, run to show it works
    final = scope["final"]
    assert isinstance(final, pl.LazyFrame)
    check(final.collect())
    assert scope["share_complete"] == pytest.approx(2 / 4)


def test_bigquery_definition_matches_the_layout() -> None:
    """The external table's partition columns are the table's partition keys, its prefix is the
    folder the keys are under, its URI matches every partition file, and no partition column is a
    column of the files (BigQuery refuses that)."""
    (ddl,) = blocks("README.md", "sql", "hive_partition_uri_prefix")
    assert "require_partition_filter = true" in ddl
    columns = re.search(r"WITH PARTITION COLUMNS \((.*?)\)", ddl)
    assert columns is not None
    names = [part.split()[0] for part in columns.group(1).split(",")]
    assert tuple(names) == STORY_FINAL.partition_by
    assert not set(names) & set(STORY_FINAL.column_names)
    prefix = re.search(r"hive_partition_uri_prefix = 'gs://BUCKET/PREFIX/(.*?)'", ddl)
    uri = re.search(r"uris = \['gs://BUCKET/PREFIX/(.*?)'\]", ddl)
    assert prefix is not None
    assert uri is not None
    key = table_key(STORY_FINAL, "NPI", date(2026, 11, 10))
    assert key.startswith(prefix.group(1) + "/account=NPI/posted_date=2026-11-10/")
    pattern = re.escape(uri.group(1)).replace(r"\*", ".*")
    assert re.fullmatch(pattern, key)
