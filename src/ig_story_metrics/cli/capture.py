"""Commands that capture and look at the lake: run, sweep, audit, demo."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import SecretStr

from ig_story_metrics.cli.common import (
    EXIT_FAILED,
    AccountOption,
    app,
    console,
    fail,
    lake_accounts,
)
from ig_story_metrics.clock import MAX_REPLAY_HOURS, VirtualClock, utc_now
from ig_story_metrics.errors import ConfigError, StorageError
from ig_story_metrics.jobs import hourly
from ig_story_metrics.model import lazy
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.shards import Shard, parse_shard
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.report.events import log_report
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import (
    RunConfig,
    load_settings,
    prepare_run,
    resolve_tokens,
)

# What only the sweep, the audit and the demo need is imported by them, when they run: the hourly
# run, the command every deployment calls each hour, starts without the simulator, the audit,
# the replay and their dependencies (a tenth of a second and more of every start).
if TYPE_CHECKING:
    from ig_story_metrics.jobs import day
    from ig_story_metrics.report.audit import AuditReport, DayRun
    from ig_story_metrics.simulator import World

Job = Callable[[RunConfig], RunReport]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="With --all: only the accounts of shard I of N (by a hash of the name). "
        "Cloud Run Jobs tasks shard themselves (CLOUD_RUN_TASK_INDEX/COUNT).",
    ),
]


def _shard(text: str | None) -> Shard | None:
    """The --shard option, or a one-line usage error (exit 2)."""
    if text is None:
        return None
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _hourly(c: RunConfig) -> RunReport:
    return hourly.run(c.settings, c.accounts, c.tokens)


def _capture(config: Callable[[], RunConfig], job: Job = _hourly) -> RunReport:
    """Build the run's configuration and run it; library errors become one-line exits (2)."""
    try:
        run_config = config()
        register_secrets(t.get_secret_value() for t in run_config.tokens.values())
        return job(run_config)
    except (ConfigError, StorageError) as exc:
        raise fail(str(exc)) from None


def _rendering(as_json: bool) -> None:
    """The run's table renderer (and rich) loads beside its Graph calls (model/lazy.py)."""
    if not as_json:
        lazy.load_with("ig_story_metrics.report.terminal")


def _finish(report: RunReport, as_json: bool) -> None:
    log_report(report)
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        from ig_story_metrics.report.terminal import render_run

        render_run(report, console())
    raise typer.Exit(report.exit_code)


@app.command()
def run(
    accounts: Annotated[
        list[str] | None, typer.Argument(help="Account names, e.g. NPI LT.")
    ] = None,
    all_accounts: Annotated[bool, typer.Option("--all", help="Every account in the file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    shard: ShardOption = None,
) -> None:
    """One hourly run: snapshot the live stories of the named accounts (or --all).

    Example: IG_ACCESS_TOKEN=... ig-story-metrics run NPI LT
    """
    part = _shard(shard)
    _rendering(as_json)
    _finish(
        _capture(lambda: prepare_run(accounts or [], all_accounts=all_accounts, shard=part)),
        as_json,
    )


@app.command()
def sweep(
    accounts: Annotated[
        list[str] | None, typer.Argument(help="Account names, e.g. NPI LT.")
    ] = None,
    all_accounts: Annotated[bool, typer.Option("--all", help="Every account in the file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    always_list: Annotated[
        bool,
        typer.Option(
            "--list",
            help="List the live stories even when the lake's last hourly "
            "listing is fresh enough to plan from.",
        ),
    ] = False,
    shard: ShardOption = None,
) -> None:
    """The expiry pass: snapshot only the stories expiring within IG_SWEEP_WINDOW_MINUTES.

    Run it every 10 minutes beside the hourly run, so that each story's last snapshot comes
    minutes before it vanishes. Example: ig-story-metrics sweep --all
    """
    from ig_story_metrics.jobs import sweep as sweep_job

    plan: sweep_job.Plan = "list" if always_list else "lake"

    def job(c: RunConfig) -> RunReport:
        return sweep_job.run(c.settings, c.accounts, c.tokens, plan=plan)

    part = _shard(shard)
    _rendering(as_json)
    _finish(
        _capture(lambda: prepare_run(accounts or [], all_accounts=all_accounts, shard=part), job),
        as_json,
    )


@app.command()
def audit(
    days: Annotated[int, typer.Option(min=1, max=92, help="UTC days, today included.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON.")] = False,
    final_minutes: Annotated[
        float, typer.Option(min=1, help="A final snapshot is at most this long before expiry.")
    ] = 10,
    late_minutes: Annotated[
        float, typer.Option(min=1, help="A story first seen later than this after posting is late.")
    ] = 70,
    max_missed_finals: Annotated[
        int, typer.Option(min=0, help="Exit 1 when more finals than this were missed.")
    ] = 0,
    max_missing_hours: Annotated[
        int, typer.Option(min=0, help="Exit 1 when more hourly runs than this are missing.")
    ] = 0,
    max_missing_final_rows: Annotated[
        int,
        typer.Option(min=0, help="Exit 1 when more expired stories than this lack a final row."),
    ] = 0,
    account: AccountOption = None,
) -> None:
    """Coverage per account and UTC day, read from the lake (STORAGE_URL, local or gs://).

    Exit 1 when a story's last minutes, an hourly run or a story's final row were missed (beyond
    the thresholds).
    Example: ig-story-metrics audit --days 7 --json --account NPI
    """
    from ig_story_metrics.jobs import audit as audit_job
    from ig_story_metrics.report.audit import log_audit
    from ig_story_metrics.report.terminal import render_audit

    accounts = lake_accounts(account)
    try:
        with hourly.lake_for(load_settings()) as lake:
            report = audit_job.audit(
                lake,
                now=utc_now(),
                days=days,
                accounts=accounts,
                final_within=timedelta(minutes=final_minutes),
                late_after=timedelta(minutes=late_minutes),
                max_missed_finals=max_missed_finals,
                max_missing_hours=max_missing_hours,
                max_missing_final_rows=max_missing_final_rows,
            )
    except (ConfigError, StorageError) as exc:
        raise fail(str(exc)) from None
    log_audit(report)
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        render_audit(report, console())
    raise typer.Exit(report.exit_code)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the simulated accounts.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    hours: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_REPLAY_HOURS,
            help="Replay the last N hours on a virtual "
            "clock: hourly runs and sweeps, then the audit.",
        ),
    ] = None,
) -> None:
    """Run the job on the built-in Graph API simulator (no credentials) into ./data or STORAGE_URL.

    With --hours N: the last N hours replayed in seconds on a virtual clock shared by the simulator
    and the jobs (the hourly run every full hour, the sweep every 10 minutes), then the audit.
    Example: ig-story-metrics demo --hours 48
    """
    from ig_story_metrics.jobs import day
    from ig_story_metrics.report.terminal import render_audit, render_day
    from ig_story_metrics.simulator import DEFAULT_TOKEN, SEED_ACCOUNTS, simulator_server

    accounts = [Account(name, uid) for name, uid in SEED_ACCOUNTS.items()]
    end = utc_now()
    clock = VirtualClock(end - timedelta(hours=hours or 0))
    with simulator_server(seed=seed, clock=clock if hours else utc_now) as server:
        if not as_json:
            console().print(f"Graph API simulator on {server.url} (seed {seed})", highlight=False)

        def config() -> RunConfig:
            settings = load_settings().model_copy(
                update={"graph_api_url": server.url, "access_token": SecretStr(DEFAULT_TOKEN)}
            )
            return RunConfig(settings, accounts, resolve_tokens(settings, accounts, env={}))

        if hours is None:
            _finish(_capture(config), as_json)
        try:
            c = config()
            ticks = day.schedule(clock(), end)
            if not as_json:
                console().print(f"replaying {hours} h on a virtual clock ending now ...")
            replay, report = _replay(c, server.simulator.world, clock, ticks, end)
        except (ConfigError, StorageError) as exc:
            raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(
            json.dumps(
                {"day": replay.model_dump(mode="json"), "audit": report.model_dump(mode="json")},
                indent=2,
            )
            + "\n"
        )
    else:
        render_audit(report, console())
        render_day(replay, console())
    raise typer.Exit(EXIT_FAILED if replay.hourly.failed_runs + replay.sweep.failed_runs else 0)


def _replay(
    c: RunConfig, world: World, clock: VirtualClock, ticks: list[day.Tick], end: datetime
) -> tuple[DayRun, AuditReport]:
    """The replay of `demo --hours`: the simulator's signed webhook deliveries stored in process
    after every run, then the audit and the final values."""
    from ig_story_metrics.jobs import day, day_final
    from ig_story_metrics.simulator.webhooks import WebhookSender

    with hourly.lake_for(c.settings) as lake:
        secret = secrets.token_hex(16)  # signs the simulated webhook deliveries
        post = day_final.inbox(lake, c.accounts, secret, clock)
        sender = WebhookSender(world, "http://in-process.invalid/", secret, post=post)

        def deliver(tick: day.Tick, _: RunReport) -> None:
            sender.tick(tick.at)

        replay = day.run(c.settings, c.accounts, c.tokens, clock, ticks, lake=lake, on_run=deliver)
        report = day.audit_replay(lake, replay, end)
        day_final.finalize_day(lake, c.accounts, replay, end)
    return replay, report
