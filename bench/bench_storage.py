"""How long does adding one run to a daily file take, against baselines, on the local backend?

    .venv/bin/python bench/bench_storage.py [--stories 100] [--hours 0 6 12 23] [--repeat 7]

For a daily file already holding `hours` runs of `stories` rows each, it times (median of
`--repeat`, each from the same starting file):

- naive write: `write_parquet` of the whole day's frame, already in memory (no read, no merge,
  no fsync): the least any writer of the full file pays, and what a writer that loses other
  runs' rows would pay;
- unsafe merge: read the file, concatenate, write it back in place (no lock, no temp file, no
  fsync, no schema): the merge without the safety;
- Lake.append: the real thing (lock, read, merge by run_id, encode in memory, temp file +
  fsync + rename + directory fsync, schema JSON check).

Prints a table; there are no assertions on timing. `make bench` runs it with the defaults.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from ig_story_metrics.model.metrics import METRIC_COLUMNS
from ig_story_metrics.model.snapshot import SNAPSHOTS, snapshot_row
from ig_story_metrics.model.story import Story
from ig_story_metrics.storage import encode_parquet, open_lake
from ig_story_metrics.storage.layout import snapshot_key

ACCOUNT = "NPI"
DAY = date(2026, 11, 24)


def run_frame(hour: int, stories: int) -> pl.DataFrame:
    """One hourly run's rows: `stories` live stories with every metric filled."""
    fetched_at = datetime(DAY.year, DAY.month, DAY.day, hour, 5, tzinfo=UTC)
    metrics = {name: 1000 + hour for name in METRIC_COLUMNS}
    rows = [
        snapshot_row(
            account=ACCOUNT,
            ig_user_id="17841400000000001",
            story=Story(
                id=f"1790000000{i:06d}",
                posted_at=fetched_at - timedelta(minutes=7 + 13 * i),
                media_type="VIDEO" if i % 3 == 0 else "IMAGE",
                media_product_type="STORY",
                permalink=f"https://www.instagram.com/stories/npi/{i}/",
                caption=f"story {i}",
            ),
            fetched_at=fetched_at,
            run_id=f"{fetched_at:%Y%m%dT%H%M%SZ}-{hour:08x}",
            api_version="v25.0",
            metrics=metrics,
            status="ok",
        )
        for i in range(stories)
    ]
    return SNAPSHOTS.frame(rows)


def median_ms(action: Callable[[], object], reset: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        reset()
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=100, help="rows per hourly run")
    parser.add_argument("--hours", type=int, nargs="+", default=[0, 6, 12, 23])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: $TMPDIR)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        storage = open_lake(str(root))
        path = root / snapshot_key(ACCOUNT, DAY)
        print(
            f"Appending one run of {args.stories} rows to a daily file holding H earlier runs "
            f"(local backend, {root}); median of {args.repeat}, milliseconds."
        )
        header = (
            f"{'H runs':>6} {'rows before':>11} {'KiB after':>9} {'naive write':>11} "
            f"{'unsafe merge':>12} {'append':>8} {'append/naive':>12}"
        )
        print(header)
        print("-" * len(header))
        for hours in args.hours:
            earlier = [run_frame(h, args.stories) for h in range(hours)]
            new = run_frame(hours, args.stories)
            before = encode_parquet(pl.concat(earlier)) if earlier else None
            whole = pl.concat([*earlier, new])

            def reset(before: bytes | None = before) -> None:
                path.parent.mkdir(parents=True, exist_ok=True)
                if before is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(before)

            def naive(whole: pl.DataFrame = whole) -> None:
                whole.write_parquet(path, compression="zstd")

            def unsafe(new: pl.DataFrame = new) -> None:
                old = pl.read_parquet(io.BytesIO(path.read_bytes())) if path.exists() else None
                merged = new if old is None else pl.concat([old, new])
                merged.write_parquet(path, compression="zstd")

            def append(new: pl.DataFrame = new) -> None:
                storage.append(SNAPSHOTS, ACCOUNT, DAY, new)

            naive_ms = median_ms(naive, reset, args.repeat)
            unsafe_ms = median_ms(unsafe, reset, args.repeat)
            append_ms = median_ms(append, reset, args.repeat)
            size_kib = path.stat().st_size / 1024
            rows_before = hours * args.stories
            check = storage.read(SNAPSHOTS, ACCOUNT, DAY).height
            if check != rows_before + args.stories:
                print(f"unexpected row count {check}", file=sys.stderr)
                return 1
            print(
                f"{hours:>6} {rows_before:>11} {size_kib:>9.0f} {naive_ms:>11.1f} "
                f"{unsafe_ms:>12.1f} {append_ms:>8.1f} {append_ms / naive_ms:>11.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
