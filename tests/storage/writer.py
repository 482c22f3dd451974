"""A writer process for the crash and concurrency tests (run as a script, not collected by pytest).

    python writer.py STORAGE_URL TAG COUNT [--wait]

Appends COUNT runs (0: until killed) of `ROWS` snapshot rows each to account `ACCOUNT`'s file for
`DAY`, run_ids `TAG-0000`, `TAG-0001`, ... It prints `ready` once the storage is reachable, waits
for a line on stdin with `--wait` (so several writers start together), and prints each run_id only
after `append` has returned: a printed run_id is a committed one. At the end it prints
`conflicts N`: how many writes lost a generation race and were merged again.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from ig_story_metrics.model.snapshot import SNAPSHOTS, snapshot_row
from ig_story_metrics.model.story import Story
from ig_story_metrics.storage import Backend, ConflictError, Lake, open_lake
from ig_story_metrics.storage.gcs import GcsBackend

ACCOUNT = "NPI"
IG_USER_ID = "17841400000000001"
DAY = date(2026, 11, 24)
ROWS = 8


def snapshot_frame(run_id: str, rows: int = ROWS, *, account: str = ACCOUNT) -> pl.DataFrame:
    """`rows` snapshot rows of one run (story ids 0..rows-1), as the pipeline would build them."""
    fetched_at = datetime(DAY.year, DAY.month, DAY.day, 15, 30, tzinfo=UTC)
    out = []
    for i in range(rows):
        story = Story(
            id=f"1790000000{i:06d}",
            posted_at=fetched_at - timedelta(minutes=17 + 41 * i),
            media_type="IMAGE" if i % 3 else "VIDEO",
            media_product_type="STORY",
            permalink=f"https://www.instagram.com/stories/npi/{i}/",
        )
        out.append(
            snapshot_row(
                account=account,
                ig_user_id=IG_USER_ID,
                story=story,
                fetched_at=fetched_at,
                run_id=run_id,
                api_version="v25.0",
                metrics={"views": 100 + i, "reach": 80 + i, "replies": 0, "navigation": None},
                status="ok",
            )
        )
    return SNAPSHOTS.frame(out)


class CountingBackend:
    """Delegates to a backend and counts the writes that lost a generation race."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.conflicts = 0
        self.url = inner.url
        self.read = inner.read
        self.move = inner.move
        self.keys = inner.keys
        self.locked = inner.locked
        self.close = inner.close
        self.writers = inner.writers
        self.inline = inner.inline

    def write(self, key: str, data: bytes, *, if_generation: int, **more: Any) -> None:
        try:
            self.inner.write(key, data, if_generation=if_generation, **more)
        except ConflictError:
            self.conflicts += 1
            raise


# Lakes and GCS backends opened as a deployment opens them, with the emulator host the test
# environment names (settings pass STORAGE_EMULATOR_HOST to storage; tests set it by monkeypatch).


def open_test_lake(url: str) -> Lake:
    return open_lake(url, emulator_host=os.environ.get("STORAGE_EMULATOR_HOST"))


def gcs_backend(bucket: str, *args: Any, **kwargs: Any) -> GcsBackend:
    return GcsBackend(
        bucket, *args, emulator_host=os.environ.get("STORAGE_EMULATOR_HOST"), **kwargs
    )


def main(argv: list[str]) -> int:
    url, tag, count = argv[0], argv[1], int(argv[2])
    storage = open_test_lake(url)
    counting = CountingBackend(storage.backend)
    storage.backend = counting
    with storage:
        storage.read(
            SNAPSHOTS, ACCOUNT, DAY
        )  # connect (and create the GCS client) before the start line
        print("ready", flush=True)
        if "--wait" in argv:
            sys.stdin.readline()
        i = 0
        while count == 0 or i < count:
            run_id = f"{tag}-{i:04d}"
            storage.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame(run_id))
            print(run_id, flush=True)
            i += 1
    print(f"conflicts {counting.conflicts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
