"""What a run prepares beside other work. Polars is imported when first used (model/lazy.py): not
by importing the modules of the run, and once, whichever thread touches it first (the hourly run
loads it in a worker thread once its first request is sent; the main thread may need it before
that is done). The TLS context of the Graph clients is built in a worker thread that the console
script starts before it imports the CLI (__main__.py, graph/pools.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from pydantic import SecretStr

from ig_story_metrics import __version__
from ig_story_metrics.jobs import hourly
from ig_story_metrics.model import lazy
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import load_settings
from ig_story_metrics.simulator import SEED_ACCOUNTS

from .conftest import IN_PROCESS_URL, ROOT, SECRET_TOKEN, SimTransport, frozen, make_simulator

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
from ig_story_metrics.model import lazy
lazy.load_with("ig_story_metrics.report.terminal", "ig_story_metrics.report.terminal")
print("rich.console" in sys.modules, lazy._after)
lazy.load()
print("rich.console" in sys.modules, "ig_story_metrics.report.terminal" in sys.modules)
"""


def test_polars_is_imported_on_first_use_from_any_thread_with_what_the_entry_point_names() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False <polars, not imported yet>",
        "[2, 2, 2, 2] <polars, imported> True",
        "False ['ig_story_metrics.report.terminal']",
        "True True",
    ]


def _run_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens: dict[str, SecretStr]
) -> tuple[RunReport, list[str]]:
    """An hourly run of the seed accounts in process; the order in which its requests were
    answered and Polars was loaded (by anyone: also the main thread, when it needs it first)."""
    events: list[str] = []
    transport = SimTransport(make_simulator())
    handle = transport.handler

    def recording(request: httpx.Request) -> httpx.Response:
        events.append("request")
        return handle(request)  # type: ignore[no-any-return]

    transport.handler = recording
    real_load = lazy.load

    def load() -> ModuleType:
        events.append("load")
        return real_load()

    monkeypatch.setattr(lazy, "load", load)
    settings = load_settings(
        {"IG_GRAPH_API_URL": IN_PROCESS_URL, "STORAGE_URL": str(tmp_path / "lake")}
    )
    accounts = [Account(name, uid) for name, uid in SEED_ACCOUNTS.items()]
    report = hourly.run(settings, accounts, tokens, transport=transport, clock=frozen())
    return report, events


def test_the_run_loads_polars_once_its_first_request_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not before: building the first request would share the interpreter with the import."""
    token = SecretStr(SECRET_TOKEN)
    report, events = _run_recording(tmp_path, monkeypatch, dict.fromkeys(SEED_ACCOUNTS, token))
    assert report.exit_code == 0
    assert events[0] == "request"
    assert "load" in events
    assert events.count("request") > 1


def test_a_run_that_sends_nothing_does_not_load_polars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token for anyone: every account fails without a call, and nothing waits for Polars."""
    report, events = _run_recording(tmp_path, monkeypatch, {})
    assert report.exit_code == 1
    assert [a.ok for a in report.accounts] == [False] * len(SEED_ACCOUNTS)
    assert events == []


TLS_PROBE = """
import ssl, sys, threading
import httpx
built = []
real = httpx.create_ssl_context
def spy(*args, **kwargs):
    built.append(threading.current_thread().name)
    return real(*args, **kwargs)
httpx.create_ssl_context = spy
from ig_story_metrics.graph import pools
if sys.argv[1] == "prepared":
    pools.prepare_tls_context()
    pools.prepare_tls_context()
first, second = pools.tls_context(), pools.tls_context()
print(built, first is second, first.verify_mode == ssl.CERT_REQUIRED)
"""


def test_the_tls_context_is_built_once_in_a_worker_thread_when_prepared() -> None:
    def probe(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", TLS_PROBE, mode],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert re.fullmatch(r"\['Thread-[^']*'\] True True", probe("prepared"))  # one, not main
    assert probe("inline") == "['MainThread'] True True"


SLOW_TLS = """
import sys, threading, time
from pathlib import Path
from ig_story_metrics.graph import pools
def slow(future):
    time.sleep(0.3)  # OpenSSL loading the CA bundle, on a busy machine
    Path(sys.argv[1]).write_text("built")
    future.set_result(None)
pools._build_tls = slow
pools.prepare_tls_context()
threading.Thread(target=time.sleep, args=(0.01,)).start()  # so the exit is the interpreter's own
sys.exit(0)
"""


def test_an_exit_while_the_tls_context_is_built_waits_for_it(tmp_path: Path) -> None:
    """The context's thread is a daemon, and a normal exit tore the interpreter down under it
    while OpenSSL was still loading the CA bundle: the process died of SIGSEGV (105 of 150 exits
    right after `prepare_tls_context()`; CI caught one in `test_exit`). An exit waits for it."""
    marker = tmp_path / "built"
    done = subprocess.run(
        [sys.executable, "-c", SLOW_TLS, str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "built"


ENTRY_PROBE = """
import sys
from ig_story_metrics.__main__ import main
from ig_story_metrics.graph import pools
calls = []
pools.prepare_tls_context = lambda: calls.append("ig_story_metrics.cli" in sys.modules)
import atexit
atexit.register(lambda: print(calls))
sys.argv = ["ig-story-metrics", "--version"]
main()
"""


def test_the_console_script_starts_the_tls_context_before_it_imports_the_cli() -> None:
    """`ig-story-metrics` is `__main__.main`: it starts the context's thread, then imports the
    CLI (0.3 s that hide the context's 40 ms); the CLI's own call finds it started."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert scripts["project"]["scripts"] == {"ig-story-metrics": "ig_story_metrics.__main__:main"}
    done = subprocess.run(
        [sys.executable, "-c", ENTRY_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"ig-story-metrics {__version__}", "[False, True]"]
