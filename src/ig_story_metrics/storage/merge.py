"""How a partition's stored rows and a run's new rows become one file, without losing either.

    unite(table, stored, where)          the stored rows under the table's columns, unknown ones kept
    merge(table, stored, new, where)     stored rows (minus a re-run's own) + the new rows

The rules (docs/storage.md, "Merging"):
- every stored row is kept, except the rows of a re-run: same non-null `run_id` as a new row; a
  null or missing `run_id` never matches;
- columns are united by name: the table's declared columns first (in their declared order), then
  the columns this version does not know, in their stored order; a column one side lacks is null;
- a stored column must hold the declared type, or one that converts to it without changing a
  value (a narrower integer, Float32, a time unit, an all-null column); anything else (`views`
  stored as text) is refused with a `StorageError`, never coerced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ig_story_metrics.errors import StorageError
from ig_story_metrics.model.table import Table

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)


def unite(table: Table, stored: pl.DataFrame, where: str) -> pl.DataFrame:
    """`stored` with every declared column (nulls where it had none) in declared order, cast to
    its declared type where that changes no value, then the unknown columns as they were. A
    file this version wrote has the table's schema exactly: it is returned as it is."""
    if table.has_schema(stored):
        return stored
    declared = table.polars_schema
    present = set(stored.columns)
    columns = [
        _as_declared(stored.get_column(name), dtype, table, where)
        if name in present
        else pl.Series(name, [None] * stored.height, dtype=dtype)
        for name, dtype in declared.items()
    ]
    unknown = [stored.get_column(name) for name in stored.columns if name not in declared]
    return pl.DataFrame([*columns, *unknown])


def merge(table: Table, stored: pl.DataFrame, new: pl.DataFrame, where: str) -> pl.DataFrame:
    """Every stored row but those of a re-run (same non-null run_id as a new row), then `new`
    (conformed to `table`), with the columns of both.

    The run ids are compared in Python: a day's file holds one run's rows an hour (hundreds of
    rows, a few thousand for a busy account), and Polars' `is_in` and `filter` cost 0.3-0.6 ms
    each at that size (a merge into 100 rows took 1.2 ms, now 0.07 ms when no stored row is the
    run's: every run but a re-run). `vstack` joins the two frames of one schema (18 us against
    `concat`'s 190 us): the same rows, the same file."""
    old = unite(table, stored, where)
    extra = [name for name in old.columns if name not in table.polars_schema]
    ours = new
    if extra:
        ours = new.with_columns(pl.lit(None, dtype=old.schema[name]).alias(name) for name in extra)
    run_ids = {run for run in new.get_column("run_id").to_list() if run is not None}
    if any(run in run_ids for run in old.get_column("run_id").to_list()):  # a re-run
        old = old.filter(~pl.col("run_id").is_in(list(run_ids)).fill_null(False))
    if ours.columns != old.columns:  # in the stored order (a select names every column)
        ours = ours.select(old.columns)
    return old.vstack(ours)


def _as_declared(column: pl.Series, declared: pl.DataType, table: Table, where: str) -> pl.Series:
    """The stored column in its declared type, or a `StorageError` when that would change it."""
    stored = column.dtype
    if stored == declared:
        return column
    if _same_kind(stored, declared):
        try:
            converted = column.cast(declared, strict=True)
            if converted.cast(stored).equals(column):  # no value changed (e.g. ns -> us)
                return converted
        except pl.exceptions.PolarsError:
            pass
    raise StorageError(
        f"{where}: column {column.name!r} is stored as {stored}, which does not fit the "
        f"{declared} that table {table.name} declares; the file was left as it is and nothing "
        "was written (fix it by hand, or move it aside)"
    )


def _same_kind(stored: pl.DataType, declared: pl.DataType) -> bool:
    """Whether a stored type is a narrower or differently-scaled form of the declared one."""
    if stored == pl.Null():
        return True
    if declared.is_integer():
        return stored.is_integer()
    if declared.is_float():
        return stored.is_float()
    if isinstance(declared, pl.Datetime):
        return isinstance(stored, pl.Datetime) and stored.time_zone == declared.time_zone
    if declared == pl.String():
        return isinstance(stored, pl.Categorical | pl.Enum)
    return False
