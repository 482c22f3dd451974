"""The typer app, its --version, and the one-line failure every command ends with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ig_story_metrics import __version__
from ig_story_metrics.model.accounts import account_name_problem

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
# `--account NAME`, repeatable, of the commands that read the lake (the audit, the report)
AccountOption = Annotated[
    list[str] | None,
    typer.Option("--account", help="Only this account (repeat for more). Default: every one."),
]


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


def lake_accounts(names: list[str] | None) -> list[str] | None:
    """The `--account` names given (None: every account in the lake); a name that cannot be an
    account's is a usage error, before anything is read."""
    for name in names or ():
        if problem := account_name_problem(name):
            raise fail(f"--account {name!r}: {problem}")
    return names or None
