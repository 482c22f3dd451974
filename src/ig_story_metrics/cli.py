"""Thin typer commands over the library: parse, call, turn library errors into one-line messages.

Exit codes: 0 every account captured, 1 at least one account failed (the others are stored),
2 usage or configuration error.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from ig_story_metrics import __version__, logs, settings
from ig_story_metrics.errors import ConfigError, StorageError
from ig_story_metrics.graph.errors import GraphError
from ig_story_metrics.jobs import hourly, renew, tokens
from ig_story_metrics.jobs.accounts import discover, discovery_token
from ig_story_metrics.jobs.renew import RenewError
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.report.events import log_report
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.report.terminal import render_run, render_tokens
from ig_story_metrics.report.tokens import log_tokens
from ig_story_metrics.settings import (
    RunConfig,
    load_accounts,
    load_settings,
    prepare_run,
    resolve_tokens,
)
from ig_story_metrics.simulator import (
    DEFAULT_IG_TOKEN,
    DEFAULT_TOKEN,
    INSTAGRAM_PREFIX,
    SEED_ACCOUNTS,
    Faults,
    simulator_server,
)

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


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def _capture(config: Callable[[], RunConfig]) -> RunReport:
    """Build the run's configuration and run it; library errors become one-line exits (2)."""
    try:
        run_config = config()
        register_secrets(t.get_secret_value() for t in run_config.tokens.values())
        return hourly.run(run_config.settings, run_config.accounts, run_config.tokens)
    except (ConfigError, StorageError) as exc:
        raise _fail(str(exc)) from None


def _finish(report: RunReport, as_json: bool) -> None:
    log_report(report)
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        render_run(report, Console())
    raise typer.Exit(report.exit_code)


@app.command()
def run(
    accounts: Annotated[
        list[str] | None, typer.Argument(help="Account names, e.g. NPI LT.")
    ] = None,
    all_accounts: Annotated[bool, typer.Option("--all", help="Every account in the file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """One hourly run: snapshot the live stories of the named accounts (or --all).

    Example: IG_ACCESS_TOKEN=... ig-story-metrics run NPI LT
    """
    _finish(_capture(lambda: prepare_run(accounts or [], all_accounts=all_accounts)), as_json)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated accounts.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Run the job on the built-in Graph API simulator (no credentials) into ./data or STORAGE_URL.

    Example: ig-story-metrics demo
    """
    accounts = [Account(name, uid) for name, uid in SEED_ACCOUNTS.items()]
    with simulator_server(seed=seed) as server:
        if not as_json:
            Console().print(f"Graph API simulator on {server.url} (seed {seed})", highlight=False)

        def config() -> RunConfig:
            settings = load_settings().model_copy(
                update={"graph_api_url": server.url, "access_token": SecretStr(DEFAULT_TOKEN)}
            )
            return RunConfig(settings, accounts, resolve_tokens(settings, accounts, env={}))

        report = _capture(config)
    _finish(report, as_json)


def _fault_parameters() -> list[inspect.Parameter]:
    """One command-line option per `Faults` field (the simulator's one definition of faults)."""
    params = []
    for spec in dataclasses.fields(Faults):
        if spec.name == "seed":
            continue
        meta = spec.metadata
        flag = meta.get("flag") or "--" + spec.name.replace("_", "-")
        annotation: Any
        if isinstance(spec.default, frozenset):
            annotation = Annotated[list[str] | None, typer.Option(flag, help=meta["help"])]
            default: object = None
        else:
            kind = type(spec.default)
            option = typer.Option(flag, min=meta.get("min"), max=meta.get("max"), help=meta["help"])
            annotation = Annotated[kind, option]
            default = spec.default
        params.append(
            inspect.Parameter(
                spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return params


def simulate(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: a free one).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Seed of the accounts, stories and faults.")] = 0,
    page_size: Annotated[
        int, typer.Option(min=1, max=100, help="Most stories per listing page.")
    ] = 25,
    **fault_options: Any,
) -> None:
    """Serve the Graph API simulator alone, for trying the tool, dashboards, load or failures.

    Example: ig-story-metrics simulate --port 8080, then in another terminal
    IG_GRAPH_API_URL=http://127.0.0.1:8080 IG_ACCESS_TOKEN=sim-token
    IG_ACCOUNTS_FILE=accounts.example.toml ig-story-metrics run --all

    Faults are reproducible: the same --seed gives the same failures to the same requests.
    Example: ig-story-metrics simulate --transient-rate 0.2 --throttle-rate 0.02
    --reject-metric views --expired-token MD
    """
    values: dict[str, Any] = {
        name: frozenset(value or ()) if isinstance(value, list | type(None)) else value
        for name, value in fault_options.items()
    }
    faults = Faults(seed=seed, **values)
    try:
        server = simulator_server(
            seed=seed, host=host, port=port, page_size=page_size, faults=faults
        )
    except OSError as exc:
        raise _fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    console = Console()
    console.print(f"Graph API simulator on {server.url}  (token: {DEFAULT_TOKEN})", highlight=False)
    for name, uid in SEED_ACCOUNTS.items():
        console.print(f"  account {name}: ig_user_id {uid}", highlight=False)
    console.print(
        f"  Instagram Login host: {server.url}{INSTAGRAM_PREFIX}  (token: {DEFAULT_IG_TOKEN})",
        highlight=False,
    )
    if faults.any:
        console.print(f"  faults: {faults}", highlight=False)
    console.print("Ctrl-C stops it.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")


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
    if token_env is not None and not settings.ENV_NAME.match(token_env):
        raise _fail(f"--token-env {token_env!r} is not a variable name")
    if out is not None and out.exists():
        raise _fail(f"{out} exists: discover never writes over an accounts file")
    try:
        loaded = load_settings()
        token = discovery_token(loaded, token_env)
        text, warnings = discover(loaded, token, login=login.value, token_env=token_env)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except GraphError as exc:
        raise _fail(f"Meta refused the discovery: {exc.describe()}", EXIT_FAILED) from None
    for warning in warnings:
        Console(stderr=True).print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with out.open("x", encoding="utf-8") as file:  # "x": never over an existing file
            file.write(text)
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    Console(stderr=True).print(f"wrote {escape(str(out))}", highlight=False)


@tokens_app.command("check")
def tokens_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every token of the accounts file: valid, permissions, expiry (never printed).

    Exit 1 when a token is missing, invalid, lacks a permission or ends within 7 days.
    Example: ig-story-metrics tokens check --json
    """
    try:
        loaded = load_settings()
        report = tokens.check(loaded, list(load_accounts(loaded.accounts_file).values()))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    log_tokens(report)
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        render_tokens(report, Console())
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
    if print_token and not sys.stdout.isatty():
        raise _fail("--print shows a token only on a terminal, not into a pipe or a file")
    try:
        loaded = load_settings()
        known = load_accounts(loaded.accounts_file)
        (account,) = settings.select_accounts(known, [name], all_accounts=False)
        done = renew.refresh(loaded, account, keep=print_token)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except (RenewError, GraphError) as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    Console(stderr=True).print(escape(done.message), highlight=False, soft_wrap=True)
    if done.token is not None:
        sys.stdout.write(done.token.get_secret_value() + "\n")


_own = [
    p
    for p in inspect.signature(simulate, eval_str=True).parameters.values()
    if p.kind is not inspect.Parameter.VAR_KEYWORD
]
simulate.__signature__ = inspect.Signature([*_own, *_fault_parameters()])  # type: ignore[attr-defined]
app.command()(simulate)


def main() -> None:
    """Console-script entry point. Logs go to stderr: stdout carries the table or the JSON report."""
    logs.configure(stream=sys.stderr, setting=settings.log_format())
    app()
