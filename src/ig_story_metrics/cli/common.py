"""The typer app, its --version, and the one-line failure every command ends with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ig_story_metrics import __version__

if TYPE_CHECKING:
    from rich.console import Console

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


def console(*, stderr: bool = False) -> Console:
    """A rich console for the commands' output. rich (30 to 40 ms to import) is loaded by the
    first output, not by every start: the hourly run loads it while it waits on the network."""
    from rich.console import Console

    return Console(stderr=stderr)


def escape(text: str) -> str:
    """`text` with rich's markup escaped."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def _print_version(value: bool) -> None:
    if value:
        console().print(f"ig-story-metrics {__version__}", highlight=False)
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
    console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)
