"""bench/bench_capture.py runs end to end at a tiny size (the figures themselves are for people to
read, not asserted), and judges a repeated run on its median."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "bench_capture.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_capture", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_capture"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_median_run_is_a_real_run_and_the_spread_names_the_range() -> None:
    bench = _bench()
    runs = [
        bench.Figures(w, c, 100.0, 7, 305, 5, 300, 0.1, 0)
        for w, c in ((1.4, 1.1), (1.0, 0.8), (1.2, 0.9))
    ]
    middle = bench.median_run(runs)
    assert (middle.wall, middle.cpu) == (1.2, 0.9)
    assert "wall 1.00-1.40 s, CPU 0.80-1.10 s" in bench.spread(runs)
    assert bench.median_run(runs[:2]).wall == 1.0  # of two, the faster


def test_the_benchmark_runs_a_tiny_fleet_twice_with_its_baseline_and_a_sweep(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = _bench()
    bench.main(["--size", "2x3", "--delay", "0", "--repeat", "2", "--sweep"])
    out = capsys.readouterr().out
    assert len(re.findall(r"ours stored 6 rows in /\S+/lake; exit 0", out)) == 2
    assert "ours over 2 runs: wall" in out
    # --sweep: a sweep into the first run's lake plans every account from it, and has its row
    assert re.search(r"sweep planned 2 of 2 accounts from the lake, stored \d+ rows; exit 0", out)
    assert re.search(r"\n  sweep +\d+\.\d\d s +\d+ +\d+ ", out)
    assert "baseline" in out
    assert "lower bound: 1 HTTP requests" in out
    assert re.search(r"machine: a fresh interpreter imports Polars in \d\.\d{3} s of CPU", out)
    assert re.search(r"machine: the same import takes \d\.\d{3} s at the end", out)


def test_the_benchmark_writes_to_the_gcs_emulator_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--gcs: ours stores its rows in a bucket of the GCS emulator, as a deployment does, and
    the emulator's CPU is printed beside the table; it is stopped at the end."""
    bench = _bench()
    bench.main(["--size", "2x3", "--delay", "0", "--gcs", "--baseline-max", "0"])
    out = capsys.readouterr().out
    assert "ours stored 6 rows in gs://bench/0-lake; exit 0" in out
    assert re.search(r"lake: the GCS emulator, \d+\.\d\d s of CPU over these runs", out)
