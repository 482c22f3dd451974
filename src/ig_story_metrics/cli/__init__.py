"""Thin typer commands over the library: parse, call, turn library errors into one-line messages.

Exit codes: 0 every account captured, 1 at least one account failed (the others are stored),
2 usage or configuration error. The commands live by theme in `capture.py` (run, sweep, audit,
demo), `report.py` (the HTML report), `simulate.py` and `tokens.py` (accounts, tokens); `common.py` holds the app.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import NoReturn

from ig_story_metrics import logs, settings
from ig_story_metrics.cli import capture, final, report, simulate, tokens
from ig_story_metrics.cli.common import EXIT_FAILED, app, console, escape
from ig_story_metrics.graph import pools
from ig_story_metrics.jobs import heap

__all__ = ["app", "capture", "final", "main", "report", "simulate", "tokens"]


def main() -> NoReturn:
    """Console-script entry point. Logs go to stderr: stdout carries the table or the JSON report.

    An unexpected exception (the jobs contain their own, so this is a last resort) becomes one line
    on the terminal and an ERROR entry with the traceback in the log; exit code 1.
    """
    logs.configure(stream=sys.stderr, setting=settings.log_format())
    heap.settle()  # the collector set for a run (jobs/heap.py)
    pools.prepare_tls_context()  # started already by the console script (__main__.py)
    try:
        app()  # typer ends every command, even a successful one, with SystemExit
    except SystemExit as done:
        leave(done.code)
    except Exception as exc:
        logging.getLogger("ig_story_metrics.cli").exception(
            "unexpected error", extra={"event": "crash"}
        )
        console(stderr=True).print(
            f"[red]error:[/red] unexpected {escape(type(exc).__name__)}; the log has the details",
            highlight=False,
        )
        leave(EXIT_FAILED)
    leave(0)


def leave(code: object) -> NoReturn:
    """End the process with `code` (as `sys.exit` reads it) without the interpreter's teardown.

    Freeing the modules a command imports (pydantic's and polars' among them) takes about 0.2 s,
    a sixth of a small hourly run and paid by every command. Nothing is lost by skipping it: the
    exit hooks run first (logging's flush among them), then stdout and stderr are flushed. When a
    thread other than this one that the interpreter would wait for is still alive (none of ours
    should be), the normal exit waits for it instead; daemon threads end with the process, as
    they would with a normal exit (the TLS context's, started by every command, is waited for by
    an exit hook while it is being built: graph/pools.py).
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    if any(t is not threading.current_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(status)
    atexit._run_exitfuncs()  # the hooks a normal exit would run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream: nothing left to say
            status = status or EXIT_FAILED
    os._exit(status)
