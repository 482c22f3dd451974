"""The typer app, its --version, and the one-line failure every command ends with."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ig_story_metrics import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Never print locals in a traceback: they can hold a token.
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    help="Capture Instagram story insights before they vanish (hourly snapshots into Parquet).",
)
EXIT_FAILED = 1
EXIT_USAGE = 2


def _print_version(value: bool) -> None:
    if value:
        Console().print(f"ig-story-metrics {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Capture Instagram story insights before they vanish (hourly snapshots into Parquet)."""


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)
