"""The read recipes of README.md and docs/storage.md, run as written over a lake that mixes files
of an older version (without the columns added since), of this version, and of a newer one
(with columns this version does not know): every row comes back, every column, nulls where a file
lacked one. Plain globs fail on such a lake, which is why the recipes read by column name."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage.layout import snapshot_key
from tests.storage.writer import DAY, ROWS, open_test_lake, snapshot_frame

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/storage.md"]
ADDED_SINCE = ["reposts"]  # an older version's files lack the columns added since
NEWER = {"future_note": "from v9", "future_flag": True}  # columns of a newer version


def blocks(doc: str, language: str, needle: str) -> list[str]:
    """The fenced `language` code blocks of `doc` that contain `needle`."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    return [block for block in found if needle in block]


@pytest.fixture
def mixed_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`./data` in a fresh working folder: NPI's older day, NPI's day by this version, LT's day
    by a newer version, plus hidden and quarantined files the globs must skip."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    older = data / snapshot_key("NPI", DAY - timedelta(days=1))
    older.parent.mkdir(parents=True)
    snapshot_frame("old", rows=3).drop(ADDED_SINCE).write_parquet(older)
    open_test_lake(str(data)).append(SNAPSHOTS, "NPI", DAY, snapshot_frame("now"))
    newer = data / snapshot_key("LT", DAY)
    newer.parent.mkdir(parents=True)
    frame = snapshot_frame("new", rows=2, account="LT")
    frame.with_columns(pl.lit(v).alias(k) for k, v in NEWER.items()).write_parquet(newer)
    (older.parent / f"{older.name}.corrupt-20261123T100000Z").write_bytes(b"junk")
    (older.parent / f".{older.name}.x1.tmp").write_bytes(b"half")
    return data


def check(lake: pl.DataFrame) -> None:
    """Every row of the three files, every column, nulls where a file lacked a column."""
    assert lake.height == 3 + ROWS + 2
    assert set(lake.columns) == {*SNAPSHOTS.column_names, *NEWER}
    by_run = {run: lake.filter(pl.col("run_id") == run) for run in ("old", "now", "new")}
    assert by_run["old"].get_column("reposts").null_count() == 3
    assert by_run["now"].get_column("future_note").null_count() == ROWS
    assert by_run["new"].get_column("future_note").to_list() == ["from v9", "from v9"]
    assert (
        by_run["old"].get_column("views").to_list()
        == snapshot_frame("old", rows=3)["views"].to_list()
    )


def test_plain_globs_fail_on_a_lake_of_several_schema_versions(mixed_lake: Path) -> None:
    """Without reading by name, DuckDB and Polars both refuse this lake (what the recipes fix)."""
    pattern = "data/Instagram/*/insights/stories/*/*.parquet"
    with pytest.raises(duckdb.Error):
        duckdb.connect().sql(f"SELECT * FROM read_parquet('{pattern}')").fetchall()  # noqa: S608
    with pytest.raises(pl.exceptions.PolarsError):
        pl.scan_parquet(pattern).collect()


@pytest.mark.parametrize("doc", DOCS)
def test_the_documented_duckdb_recipe_reads_every_row_and_column(
    mixed_lake: Path, doc: str
) -> None:
    """The DuckDB `read_parquet(..., union_by_name = true)` of the document, as written."""
    (query,) = blocks(doc, "sql", "data/Instagram/")
    result = duckdb.connect().sql(query.strip().rstrip(";"))
    check(pl.DataFrame(result.fetchall(), schema=result.columns, orient="row"))


@pytest.mark.parametrize("doc", DOCS)
def test_the_documented_polars_recipe_reads_every_row_and_column(
    mixed_lake: Path, doc: str
) -> None:
    """The local Polars recipe of the document, as written: `lake` holds every row and column and
    `latest` one row per story."""
    (code,) = blocks(doc, "python", '"data/Instagram/')
    scope: dict[str, object] = {}
    exec(code, scope)  # noqa: S102 - our own documentation, run to show it works
    lake = scope["lake"]
    assert isinstance(lake, pl.LazyFrame)
    check(lake.collect())
    latest = scope["latest"]
    assert isinstance(latest, pl.DataFrame)
    assert latest.height == latest.select("account", "story_id").n_unique()
