"""The console script leaves without the interpreter's teardown, and loses nothing by it: the exit
hooks run, what it printed is flushed into a pipe, the status is the command's, and a thread still
alive is waited for (subprocesses: the entry point, as the console script calls it; test_house runs
`python -m ig_story_metrics --version`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ig_story_metrics import __version__
from ig_story_metrics.jobs.heap import THRESHOLDS

# main() the way the console script calls it, after an exit hook and optionally a live thread.
SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
out = Path(sys.argv[1])
atexit.register(lambda: (out / "hook").write_text("ran"))
gc = __import__("gc")
atexit.register(lambda: (out / "frozen").write_text(f"{gc.get_freeze_count()} {gc.get_threshold()[0]}"))
if sys.argv[2] == "thread":
    def late():
        time.sleep(0.3)
        (out / "thread").write_text("done")
    threading.Thread(target=late).start()
sys.argv = ["ig-story-metrics", *sys.argv[3:]]
from ig_story_metrics.cli import main
main()
"""


def _main(tmp_path: Path, thread: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), thread, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_command_runs_the_exit_hooks_and_flushes_its_output(tmp_path: Path) -> None:
    result = _main(tmp_path, "none", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ig-story-metrics {__version__}\n"
    assert (tmp_path / "hook").read_text() == "ran"
    # the objects of the imports are out of the collector's way (gc.freeze), and young objects
    # are collected less often (jobs/heap.py)
    frozen, threshold = map(int, (tmp_path / "frozen").read_text().split())
    assert frozen > 10_000
    assert threshold == THRESHOLDS[0] > 700


def test_the_status_is_the_commands(tmp_path: Path) -> None:
    """A usage error is 2, with typer's message on stderr; --help prints all of itself."""
    bad = _main(tmp_path, "none", "run", "--no-such-option")
    assert bad.returncode == 2
    assert "No such option" in bad.stderr
    helped = _main(tmp_path, "none", "--help")
    assert helped.returncode == 0
    assert "Usage:" in helped.stdout
    assert helped.stdout.rstrip().endswith("─╯")  # the last line of the commands box


def test_a_thread_still_alive_is_waited_for(tmp_path: Path) -> None:
    result = _main(tmp_path, "thread", "--version")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "hook").read_text() == "ran"


def test_the_cli_starts_without_what_it_never_runs() -> None:
    """The CLI does not load httpx's own command-line client (pygments, rich.syntax: 60 ms of every
    start), nor Polars or rich until a command uses them (0.1 to 0.2 s, 30 to 40 ms; the hourly
    run loads both beside its first Graph calls, model/lazy.py), nor what only other
    commands than the hourly run need (the audit, the token jobs and reports, the simulator beyond
    its faults: 30 to 40 ms);
    httpx itself works, and its stand-in CLI says it is not loaded."""
    never = (
        "pygments",
        "rich.console",
        "rich.syntax",
        "polars",
        "ig_story_metrics.report.audit",
        "ig_story_metrics.model.coverage",
        "ig_story_metrics.report.tokens",
        "ig_story_metrics.jobs.renew",
        "ig_story_metrics.jobs.accounts",
        "ig_story_metrics.simulator.api",
        "ig_story_metrics.simulator.server",
        "ig_story_metrics.simulator.world",
    )
    probe = (
        "import sys, ig_story_metrics.cli, httpx\n"
        f"print(sorted(m for m in {never!r} if m in sys.modules))\n"
        "print(httpx.Response(200, json={'a': 1}).json())\n"
        "httpx.main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines() == ["[]", "{'a': 1}"]
    assert done.returncode == 1
    assert "not loaded" in done.stderr
