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
        bench.Figures(w, c, 100.0, 7, 305, 5, 300, 0.1, 0, kernel=k)
        for w, c, k in ((1.4, 1.1, 0.3), (1.0, 0.8, 0.1), (1.2, 0.9, 0.2))
    ]
    middle = bench.median_run(runs)
    assert (middle.wall, middle.cpu) == (1.2, 0.9)
    assert "wall 1.00-1.40 s, CPU 0.80-1.10 s, 0.10-0.30 s of it in the kernel" in bench.spread(
        runs
    )
    assert bench.median_run(runs[:2]).wall == 1.0  # of two, the faster


def test_the_verdict_holds_each_size_to_all_its_targets_and_names_them() -> None:
    """A fleet of 1,000 misses its target on CPU or memory as well as on wall time, and the line
    says which targets it was held to; a size without targets gets no line."""
    bench = _bench()

    def figures(wall: float, cpu: float, rss: float, http: int = 1220) -> object:
        return bench.Figures(wall, cpu, rss, http, 61000, 1000, 60000, 0.1, 0)

    assert bench.verdict(1000, 20, 0.1, figures(13.0, 9.5, 160)) == (
        True,
        "  target 30.0 s wall, 10 s of CPU, 300 MB (and within 5 % of the bound): met",
    )
    for missed in (figures(13.0, 10.5, 160), figures(13.0, 9.5, 310), figures(31.0, 9.5, 160)):
        met, line = bench.verdict(1000, 20, 0.1, missed)
        assert not met
        assert line.endswith("MISSED")
    assert not bench.verdict(1000, 20, 0.1, figures(13.0, 9.5, 160, http=1290))[0]
    assert bench.verdict(5, 20, 0.1, figures(0.7, 5.0, 500, http=7))[1].startswith(
        "  target 0.8 s (and"
    )
    assert bench.verdict(7, 3, 0.1, figures(0.7, 0.5, 90, http=7)) == (True, "")


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
