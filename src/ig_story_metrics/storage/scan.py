"""Reading the snapshots back: every account's daily files over a range of days, as one frame.

Accounts are found in the lake itself (the folders under `Instagram/`), so an audit needs no
accounts file. Files older than a column read it as null (`Table.conform`); a day without a file
is simply absent. Reads go through `Lake.read`, so a local folder and a bucket read alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import TYPE_CHECKING

from ig_story_metrics.model.accounts import account_name_problem
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage.lake import Lake

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

ROOT = "Instagram"
READERS = 8  # parallel reads: a bucket answers each object in tens of milliseconds


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
    if len(todo) > 1:
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            frames = pool.map(lambda part: lake.read(SNAPSHOTS, *part), todo)
            read = dict(zip(todo, frames, strict=True))
    else:  # one file (an account's yesterday): no pool to start
        read = {part: lake.read(SNAPSHOTS, *part) for part in todo}
    found = [held[part] if part in held else read[part] for part in parts]
    return pl.concat([SNAPSHOTS.frame([]), *found], how="vertical")
