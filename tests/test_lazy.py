"""Polars is imported when first used (model/lazy.py): not by importing the modules of the run,
and once, whichever thread touches it first (the hourly run loads it in a worker thread while
its first calls wait on the network; the main thread may need it before that is done)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, threading
from ig_story_metrics.model.lazy import pl
import ig_story_metrics.jobs.hourly, ig_story_metrics.storage, ig_story_metrics.model.snapshot
print("polars" in sys.modules, repr(pl))
heights = []
def frame():
    heights.append(pl.DataFrame({"a": [1, 2]}).height)
threads = [threading.Thread(target=frame) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(heights, repr(pl), isinstance(pl.DataFrame(), pl.DataFrame))
"""


def test_polars_is_imported_on_first_use_from_any_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False <polars, not imported yet>",
        "[2, 2, 2, 2] <polars, imported> True",
    ]
