"""Declared tables: a `Table` names its columns, partition keys and write disposition once, and
the Polars schema, the JSON schema and (in storage/layout.py) the storage key follow from it.

Dispositions:
- `append_by_run`: a write adds its rows to the partition's file and replaces earlier rows of the same
  `run_id` (a retried run does not duplicate); every other row and column is kept;
- `replace_partition`: a write replaces the partition's file whole;
- `write_once`: an object that exists is never written again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

Kind = Literal["str", "int", "float", "datetime", "bool"]
Disposition = Literal["append_by_run", "replace_partition", "write_once"]


@functools.cache
def _dtypes() -> dict[Kind, pl.DataType]:
    """The Polars type of each kind (made when first asked for: Polars is imported then)."""
    return {
        "str": pl.String(),
        "int": pl.Int64(),
        "float": pl.Float64(),
        "datetime": pl.Datetime("us", "UTC"),
        "bool": pl.Boolean(),
    }


_JSON: dict[Kind, dict[str, str]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "datetime": {"type": "string", "format": "date-time"},
    "bool": {"type": "boolean"},
}


@dataclass(frozen=True, slots=True)
class Column:
    """One stored column."""

    name: str
    kind: Kind
    nullable: bool
    description: str
    enum: tuple[str, ...] = ()

    @property
    def dtype(self) -> pl.DataType:
        return _dtypes()[self.kind]


@dataclass(frozen=True, slots=True)
class Table:
    """A declared table: its columns, how it is partitioned and how a write lands."""

    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...]
    disposition: Disposition
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _schema: pl.Schema | None = field(default=None, init=False, repr=False, compare=False)
    _empty: pl.DataFrame | None = field(default=None, init=False, repr=False, compare=False)
    # per column: name, nullable, the type its values have as they are, enum, kind
    _checks: tuple[tuple[str, bool, type, tuple[str, ...], Kind], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(c.name for c in self.columns))
        checks = tuple((c.name, c.nullable, _FAST[c.kind], c.enum, c.kind) for c in self.columns)
        object.__setattr__(self, "_checks", checks)

    @property
    def column_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def polars_schema(self) -> pl.Schema:
        """Built once per table (Polars checks every dtype: a fleet's run asked for it thousands
        of times), and shared: its callers only read it."""
        schema = self._schema
        if schema is None:
            schema = pl.Schema({c.name: c.dtype for c in self.columns})
            object.__setattr__(self, "_schema", schema)
        return schema

    def has_schema(self, frame: pl.DataFrame) -> bool:
        """Whether `frame` has exactly this table's columns, in order, with their types: the
        common case (a frame `frame()` made, a file this version wrote), checked on the lists
        Polars gives, without building a schema of each (a fifth of the CPU, once per append)."""
        return frame.columns == list(self._names) and frame.dtypes == list(
            self.polars_schema.values()
        )

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of one row."""
        properties: dict[str, Any] = {}
        for col in self.columns:
            spec: dict[str, Any] = dict(_JSON[col.kind])
            if col.nullable:
                spec["type"] = [spec["type"], "null"]
            properties[col.name] = {
                **spec,
                "description": col.description,
                "x-parquet-type": str(col.dtype),
            }
            if col.enum:
                # a nullable column's null is a valid value too
                properties[col.name]["enum"] = [*col.enum, *([None] if col.nullable else [])]
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.title,
            "description": self.description,
            "type": "object",
            "properties": properties,
            "required": [c.name for c in self.columns if not c.nullable],
            "additionalProperties": False,
        }

    def unstorable(self, row: Mapping[str, object]) -> dict[str, str]:
        """Column -> why its value in `row` cannot be stored; empty when the whole row can be.
        A value of its column's own type is checked at once (a count in range, ASCII text, an
        aware datetime: 20,000 rows of 40 columns in a fleet's run), any other in full."""
        problems: dict[str, str] = {}
        for name, nullable, fast, enum, kind in self._checks:
            value = row.get(name)
            if value is None:
                if not nullable:
                    problems[name] = "missing"
                continue
            held = type(value)
            if held is fast and (not enum or value in enum):
                if held is int:
                    if INT64[0] <= value <= INT64[1]:  # type: ignore[operator]
                        continue
                elif held is str:
                    if value.isascii():  # type: ignore[attr-defined]
                        continue  # no lone surrogate in it
                elif held is not datetime or value.tzinfo is not None:  # type: ignore[attr-defined]
                    continue
            problem = _value_problem(kind, value)
            if problem is None and enum and value not in enum:
                problem = f"not one of {', '.join(enum)}"
            if problem:
                problems[name] = problem
        return problems

    def frame(self, rows: Iterable[Mapping[str, object]]) -> pl.DataFrame:
        """Rows (dicts keyed by column name) as a DataFrame with exactly this table's schema.
        No rows: a clone of one empty frame made once (Polars takes 0.4 ms to make an empty
        frame of 40 columns, more than one of 20 rows; a clone takes 2 us: a run of 1,000
        accounts asked for one per account, for the missing files of the day before)."""
        listed = list(rows)
        if listed:
            return pl.DataFrame(listed, schema=self.polars_schema)
        empty = self._empty
        if empty is None:
            empty = pl.DataFrame(schema=self.polars_schema)
            object.__setattr__(self, "_empty", empty)
        return empty.clone()

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """A frame cast to this table's schema, in its column order (new nullable columns added).
        A frame that has the schema already (`frame()` made it) is returned as it is."""
        schema = self.polars_schema
        if self.has_schema(frame):
            return frame
        missing = [
            pl.lit(None, dtype=schema[name]).alias(name)
            for name in self.column_names
            if name not in frame.columns
        ]
        return frame.with_columns(missing).select(
            pl.col(name).cast(schema[name]) for name in self.column_names
        )


INT64 = (-(2**63), 2**63 - 1)
# the exact type of a value each kind takes as it is (a bool is an int, but not of type int)
_FAST: dict[Kind, type] = {
    "str": str,
    "int": int,
    "float": float,
    "datetime": datetime,
    "bool": bool,
}


def _value_problem(kind: Kind, value: object) -> str | None:
    """Why `value` cannot be stored in a column of this kind, or None."""
    if kind == "str":
        if not isinstance(value, str):
            return f"not text but {type(value).__name__}"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"not valid Unicode ({exc.reason} at character {exc.start})"
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"not an integer but {type(value).__name__}"
        return None if INT64[0] <= value <= INT64[1] else "outside the 64-bit integer range"
    if kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"not a number but {type(value).__name__}"
    if kind == "datetime":
        ok = isinstance(value, datetime) and value.tzinfo is not None
        return None if ok else "not a datetime with a time zone"
    return None if isinstance(value, bool) else f"not a boolean but {type(value).__name__}"
