"""Reading the snapshots back: every account's daily files over a range of days, as one frame.

Accounts are found in the lake itself (the folders under `Instagram/`), so an audit needs no
accounts file. Files older than a column read it as null (`Table.conform`); a day without a file
is simply absent. Reads go through the lake's backend and `Lake.decode`, so a local folder and a
bucket read alike, and many files at once (`read_partitions`) as `Lake.read` reads one.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import TYPE_CHECKING, TypeVar

from ig_story_metrics.model.accounts import account_name_problem
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.model.table import Table
from ig_story_metrics.storage.lake import Lake
from ig_story_metrics.storage.layout import table_key

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

ROOT = "Instagram"
READERS = 8  # parallel reads: a bucket answers each object in tens of milliseconds
# Files decoded by one Polars query, their bytes held until it is done. 50 cost the CPU of 200
# (0.47-0.54 ms a file of 20 rows), and a sweep of 1,000 accounts peaked at 173-178 MB of RSS
# (one query per file: 168-175 MB; 200 a query: 222-225 MB).
PARSE_CHUNK = 50
T = TypeVar("T")
R = TypeVar("R")


def snapshot_accounts(lake: Lake) -> list[str]:
    """The accounts that have a folder in the lake (names that are valid account names)."""
    return [name for name in lake.backend.children(ROOT) if not account_name_problem(name)]


def day_range(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def read_snapshots(
    lake: Lake,
    days: Iterable[date],
    accounts: Sequence[str] | None = None,
    *,
    known: Mapping[tuple[str, date], pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """The snapshot rows of `accounts` (default: every account in the lake) on `days`, in the
    stored schema. `known`: partitions the caller holds as they were just written, by (account,
    day), not read again. Raises `StorageError` for a file that cannot be read."""
    names = snapshot_accounts(lake) if accounts is None else list(accounts)
    parts = [(name, day) for name in names for day in sorted(set(days))]
    held = known or {}
    todo = [part for part in parts if part not in held]
    read = dict(zip(todo, read_partitions(lake, SNAPSHOTS, todo), strict=True))
    found: list[pl.DataFrame] = []
    for part in parts:
        frame = held[part] if part in held else read[part]
        if isinstance(frame, Exception):
            raise frame
        found.append(frame)
    return pl.concat([SNAPSHOTS.frame([]), *found], how="vertical")


def read_partitions(
    lake: Lake, table: Table, parts: Sequence[tuple[str, date]]
) -> list[pl.DataFrame | Exception]:
    """Each partition (account, day) of `table` as `Lake.read` gives it, or the error reading it
    raised, in the order asked: a file that cannot be read or decoded fails only its own part.

    A bucket's objects are fetched READERS at a time (a folder's files one after another, on this
    thread). Each PARSE_CHUNK files are decoded by one Polars query (`pl.collect_all`): about
    half the CPU of one query per file (0.47-0.54 ms a file of 20 rows against 1.0-1.2 ms, 1,000
    files of a sweep). When that query fails (a file that is not Parquet), each file of the
    chunk is decoded alone."""
    found: list[pl.DataFrame | Exception] = []
    for start in range(0, len(parts), PARSE_CHUNK):
        keys = [table_key(table, *part) for part in parts[start : start + PARSE_CHUNK]]
        found.extend(_decoded(lake, table, keys, _fetched(lake, keys)))
    return found


def side_by_side(lake: Lake, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`work` on each item, the results in the order of the items: on a bucket READERS at a
    time (each waits on a round trip), on a local folder one after another on the calling thread
    (nothing to wait on there)."""
    if lake.backend.inline or len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(READERS, len(items))) as pool:
        return list(pool.map(work, items))


def _fetched(lake: Lake, keys: list[str]) -> list[bytes | Exception | None]:
    def fetch(key: str) -> bytes | Exception | None:
        try:
            return lake.backend.read(key)[0]
        except Exception as exc:  # the part's own error, raised by its reader
            return exc

    return side_by_side(lake, fetch, keys)


def _decoded(
    lake: Lake, table: Table, keys: list[str], fetched: list[bytes | Exception | None]
) -> list[pl.DataFrame | Exception]:
    files = [data for data in fetched if isinstance(data, bytes)]
    try:
        frames: Iterable[pl.DataFrame | None] = pl.collect_all(
            [pl.scan_parquet(io.BytesIO(data)) for data in files]
        )
    except Exception:  # polars raises several types: each file alone, below
        frames = [None] * len(files)
    stored = iter(frames)
    decoded: list[pl.DataFrame | Exception] = []
    for key, data in zip(keys, fetched, strict=True):
        if isinstance(data, Exception):
            decoded.append(data)
            continue
        frame = next(stored) if data is not None else None
        try:
            decoded.append(lake.decode(table, key, data, frame))
        except Exception as exc:  # the part's own error, raised by its reader
            decoded.append(exc)
    return decoded
