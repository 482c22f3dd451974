"""`simulate`: the Graph API simulator alone, its options built from `Faults`."""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ig_story_metrics.cli.common import app, console, fail
from ig_story_metrics.simulator import Faults

# The rest of the simulator is imported by the command when it runs (simulator/__init__.py).
if TYPE_CHECKING:
    from rich.console import Console

    from ig_story_metrics.simulator import SimulatorServer, World
    from ig_story_metrics.simulator.webhooks import WebhookSender


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
    webhook_url: Annotated[
        str | None,
        typer.Option(help="POST signed story_insights deliveries here as stories expire."),
    ] = None,
    app_secret: Annotated[
        str | None, typer.Option(help="The app secret that signs the webhook deliveries.")
    ] = None,
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
    from ig_story_metrics.simulator import simulator_server

    values: dict[str, Any] = {
        name: frozenset(value or ()) if isinstance(value, list | type(None)) else value
        for name, value in fault_options.items()
    }
    faults = Faults(seed=seed, **values)
    _check_webhook(webhook_url, app_secret)
    try:
        server = simulator_server(
            seed=seed, host=host, port=port, page_size=page_size, faults=faults
        )
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    sender = _webhook_sender(server.simulator.world, webhook_url, app_secret)
    shown = console()
    _announce(shown, server, faults, sender)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        shown.print("stopped")


def _announce(
    shown: Console, server: SimulatorServer, faults: Faults, sender: WebhookSender | None
) -> None:
    """Where the simulator serves, its tokens and accounts, and what it is set to do."""
    from ig_story_metrics.simulator import (
        DEFAULT_IG_TOKEN,
        DEFAULT_TOKEN,
        INSTAGRAM_PREFIX,
        SEED_ACCOUNTS,
    )

    shown.print(f"Graph API simulator on {server.url}  (token: {DEFAULT_TOKEN})", highlight=False)
    if sender is not None:
        shown.print(f"  story_insights webhook: signed deliveries to {sender.url}", highlight=False)
    for name, uid in SEED_ACCOUNTS.items():
        shown.print(f"  account {name}: ig_user_id {uid}", highlight=False)
    shown.print(
        f"  Instagram Login host: {server.url}{INSTAGRAM_PREFIX}  (token: {DEFAULT_IG_TOKEN})",
        highlight=False,
    )
    if faults.any:
        shown.print(f"  faults: {faults}", highlight=False)
    shown.print("Ctrl-C stops it.")


def _check_webhook(url: str | None, secret: str | None) -> None:
    """`--webhook-url` and `--app-secret` go together; the URL is http(s)."""
    if url is None and secret is not None:
        raise fail("--app-secret signs webhook deliveries: give --webhook-url too")
    if url is not None and not secret:
        raise fail("--webhook-url needs --app-secret (Meta signs every delivery with it)")
    if url is not None and not url.startswith(("http://", "https://")):
        raise fail(f"--webhook-url {url!r} must start with http:// or https://")


def _webhook_sender(world: World, url: str | None, secret: str | None) -> WebhookSender | None:
    """The webhook sender of `--webhook-url` (None without it), ticking every 30 s."""
    if url is None or not secret:
        return None
    from ig_story_metrics.simulator.webhooks import WebhookSender

    sender = WebhookSender(world, url, secret)
    sender.start(interval=30.0)
    return sender


_own = [
    p
    for p in inspect.signature(simulate, eval_str=True).parameters.values()
    if p.kind is not inspect.Parameter.VAR_KEYWORD
]
simulate.__signature__ = inspect.Signature([*_own, *_fault_parameters()])  # type: ignore[attr-defined]
app.command()(simulate)
