"""`accounts discover`, `tokens check`, `tokens refresh`."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ig_story_metrics import settings
from ig_story_metrics.cli.common import EXIT_FAILED, app, console, escape, fail
from ig_story_metrics.errors import ConfigError
from ig_story_metrics.graph.errors import GraphError
from ig_story_metrics.settings import (
    load_accounts,
    load_settings,
)

# Each command imports its own job when it runs: the hourly run, which every deployment calls
# each hour, starts without them (as cli/capture.py does for the sweep, the audit and the demo).

accounts_app = typer.Typer(no_args_is_help=True, help="The Instagram accounts to capture.")
tokens_app = typer.Typer(
    no_args_is_help=True, help="Token health (expiry, permissions) and renewal."
)
app.add_typer(accounts_app, name="accounts")
app.add_typer(tokens_app, name="tokens")


class LoginKind(StrEnum):
    facebook = "facebook"
    instagram = "instagram"


@accounts_app.command("discover")
def accounts_discover(
    token_env: Annotated[
        str | None, typer.Option("--token-env", help="Variable holding the token.")
    ] = None,
    login: Annotated[LoginKind, typer.Option(help="The token's login type.")] = LoginKind.facebook,
    out: Annotated[
        Path | None, typer.Option(help="Write to this new file (never over an existing one).")
    ] = None,
) -> None:
    """Print an accounts file listing every Instagram account the token can read.

    Example: ig-story-metrics accounts discover --out accounts.toml
    """
    from ig_story_metrics.jobs.accounts import discover, discovery_token

    if token_env is not None and not settings.ENV_NAME.match(token_env):
        raise fail(f"--token-env {token_env!r} is not a variable name")
    if out is not None and out.exists():
        raise fail(f"{out} exists: discover never writes over an accounts file")
    try:
        loaded = load_settings()
        token = discovery_token(loaded, token_env)
        text, warnings = discover(loaded, token, login=login.value, token_env=token_env)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except GraphError as exc:
        raise fail(f"Meta refused the discovery: {exc.describe()}", EXIT_FAILED) from None
    for warning in warnings:
        console(stderr=True).print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with out.open("x", encoding="utf-8") as file:  # "x": never over an existing file
            file.write(text)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    console(stderr=True).print(f"wrote {escape(str(out))}", highlight=False)


@tokens_app.command("check")
def tokens_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every token of the accounts file: valid, permissions, expiry (never printed).

    Exit 1 when a token is missing, invalid, lacks a permission or ends within 7 days.
    Example: ig-story-metrics tokens check --json
    """
    from ig_story_metrics.jobs import tokens
    from ig_story_metrics.report.terminal import render_tokens
    from ig_story_metrics.report.tokens import log_tokens

    try:
        loaded = load_settings()
        report = tokens.check(loaded, list(load_accounts(loaded.accounts_file).values()))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    log_tokens(report)
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        render_tokens(report, console())
    raise typer.Exit(report.exit_code)


@tokens_app.command("refresh")
def tokens_refresh(
    name: Annotated[str, typer.Argument(help="The account whose token to renew.")],
    print_token: Annotated[
        bool, typer.Option("--print", help="Also print the new token (only on a terminal).")
    ] = False,
) -> None:
    """Renew an account's token where Meta allows it; store it in its token_secret.

    Example: ig-story-metrics tokens refresh NPI
    """
    from ig_story_metrics.jobs import renew
    from ig_story_metrics.jobs.renew import RenewError

    if print_token and not sys.stdout.isatty():
        raise fail("--print shows a token only on a terminal, not into a pipe or a file")
    try:
        loaded = load_settings()
        known = load_accounts(loaded.accounts_file)
        (account,) = settings.select_accounts(known, [name], all_accounts=False)
        done = renew.refresh(loaded, account, keep=print_token)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except (RenewError, GraphError) as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    console(stderr=True).print(escape(done.message), highlight=False, soft_wrap=True)
    if done.token is not None:
        sys.stdout.write(done.token.get_secret_value() + "\n")
