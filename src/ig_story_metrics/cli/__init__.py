"""Thin typer commands over the library: parse, call, turn library errors into one-line messages.

Exit codes: 0 every account captured, 1 at least one account failed (the others are stored),
2 usage or configuration error. The commands live by theme in `capture.py` (run, sweep, audit,
demo), `report.py` (the HTML report), `simulate.py` and `tokens.py` (accounts, tokens); `common.py` holds the app.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.markup import escape

from ig_story_metrics import logs, settings
from ig_story_metrics.cli import capture, final, report, simulate, tokens
from ig_story_metrics.cli.common import EXIT_FAILED, app

__all__ = ["app", "capture", "final", "main", "report", "simulate", "tokens"]


def main() -> None:
    """Console-script entry point. Logs go to stderr: stdout carries the table or the JSON report.

    An unexpected exception (the jobs contain their own, so this is a last resort) becomes one line
    on the terminal and an ERROR entry with the traceback in the log; exit code 1.
    """
    logs.configure(stream=sys.stderr, setting=settings.log_format())
    try:
        app()
    except Exception as exc:
        logging.getLogger("ig_story_metrics.cli").exception(
            "unexpected error", extra={"event": "crash"}
        )
        Console(stderr=True).print(
            f"[red]error:[/red] unexpected {escape(type(exc).__name__)}; the log has the details",
            highlight=False,
        )
        sys.exit(EXIT_FAILED)
