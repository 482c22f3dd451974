"""Shared fixtures: the Graph API simulator in process (unit tests of the client) or on a real
loopback port (end-to-end tests), accounts files, settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.jobs import hourly
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import (
    Settings,
    load_accounts,
    load_settings,
    resolve_tokens,
    select_accounts,
)
from ig_story_metrics.simulator import (
    SEED_ACCOUNTS,
    Faults,
    GraphSimulator,
    SimulatorServer,
    World,
)
from ig_story_metrics.simulator.server import answer

# A token that looks like a real one, so a leak would be obvious in any output or file.
SECRET_TOKEN = "EAATestSecretToken0123456789abcdefTOKENxyz"
# A fixed moment: the simulator's world and the run's fetched_at agree on it exactly.
NOW = datetime(2026, 11, 24, 15, 30, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def frozen(at: datetime = NOW) -> Callable[[], datetime]:
    return lambda: at


def make_simulator(
    *,
    clock: Callable[[], datetime] | None = None,
    seed: int = 0,
    page_size: int = 25,
    shape: str = "values",
    rates: Mapping[str, float] | None = None,
    tokens: Mapping[str, frozenset[str] | None] | None = None,
    faults: Faults | None = None,
) -> GraphSimulator:
    """A simulator whose world is frozen at NOW (or `clock`), accepting SECRET_TOKEN."""
    world = World(seed=seed, clock=clock or frozen(), rates=rates)
    return GraphSimulator(
        world,
        page_size=page_size,
        shape=shape,
        tokens=tokens or {SECRET_TOKEN: None},
        faults=faults,
    )


def make_server(**options: Any) -> SimulatorServer:
    """`make_simulator(**options)` served on a free loopback port (not yet started)."""
    return SimulatorServer(make_simulator(**options))


class SimTransport(httpx.MockTransport):
    """The simulator in process, as an httpx transport that does what `simulator/server.py` does
    over a socket (the same `answer()`: form and JSON bodies, the body limit, transport faults).

    A dropped connection raises `RemoteProtocolError`, as httpx does when a server closes without
    answering; a slow answer sleeps, or raises `ReadTimeout` when the delay reaches the request's
    read timeout (no socket here to time out)."""

    def __init__(self, simulator: GraphSimulator) -> None:
        self.simulator = simulator
        self.replies: Counter[str] = Counter()  # "drop", "html" or the HTTP status, as sent
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        def sleep(seconds: float) -> None:
            timeout = request.extensions.get("timeout", {}).get("read")
            if timeout is not None and seconds >= timeout:
                raise httpx.ReadTimeout("timed out (simulated slow answer)", request=request)
            time.sleep(seconds)

        target = request.url.raw_path.decode("ascii")
        reply = answer(
            self.simulator,
            request.method,
            target,
            request.headers.items(),
            request.content,
            sleep=sleep,
        )
        if reply is None:  # a closed connection, as httpx reports it
            self.replies["drop"] += 1
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        self.replies["html" if reply.content_type == "text/html" else str(reply.status)] += 1
        headers = {"Content-Type": reply.content_type, **reply.headers}
        return httpx.Response(reply.status, headers=headers, content=reply.payload)


# Any base URL will do in process: the transport never resolves it.
IN_PROCESS_URL = "http://graph.simulator.invalid"


@pytest.fixture
def sim_transport() -> SimTransport:
    """The simulator in process (frozen at NOW, accepting SECRET_TOKEN) as an httpx transport."""
    return SimTransport(make_simulator())


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """The simulator on a free loopback port, frozen at NOW, accepting SECRET_TOKEN."""
    with make_server() as server:
        yield server


def write_accounts(path: Path, names: Mapping[str, str] = SEED_ACCOUNTS, **extra: str) -> Path:
    lines = []
    for name, uid in names.items():
        lines += [f"[accounts.{name}]", f'ig_user_id = "{uid}"']
        if name in extra:
            lines.append(f'token_env = "{extra[name]}"')
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return write_accounts(tmp_path / "accounts.toml")


def env_for(server: SimulatorServer, tmp_path: Path, accounts: Path, **more: str) -> dict[str, str]:
    """The environment of a run against `server`, storing under tmp_path/lake."""
    return {
        "IG_ACCESS_TOKEN": SECRET_TOKEN,
        "IG_ACCOUNTS_FILE": str(accounts),
        "IG_GRAPH_API_URL": server.url,
        "STORAGE_URL": str(tmp_path / "lake"),
        **more,
    }


def settings_for(server: SimulatorServer, tmp_path: Path, accounts: Path) -> Settings:
    return load_settings(env_for(server, tmp_path, accounts))


def run_cli(
    args: list[str], env: Mapping[str, str], cwd: Path, *, script: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a subprocess with only the given settings in its environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IG_", "STORAGE_"))}
    command = script or [sys.executable, "-m", "ig_story_metrics"]
    return subprocess.run(
        [*command, *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Backoffs of milliseconds through the policy object, so a test run is fast; the decisions are the
# production ones. Not `scale`: it would shorten the waits Meta announces too, and the simulator's
# throttling bursts last their real length.
FAST = RetryPolicy(max_attempts=8, base_seconds=0.005, max_seconds=0.05)
# The same for the CLI, which a test runs as a user does: settings from the environment.
FAST_ENV = {
    "IG_BACKOFF_BASE_SECONDS": "0.005",
    "IG_BACKOFF_MAX_SECONDS": "0.05",
    "IG_MAX_ATTEMPTS": "8",
}


def run(
    server: SimulatorServer, tmp_path: Path, policy: RetryPolicy = FAST, **env: str
) -> RunReport:
    """One hourly run of every seed account against `server`, at NOW, into tmp_path/lake."""
    accounts = write_accounts(tmp_path / "accounts.toml")
    settings = load_settings(env_for(server, tmp_path, accounts, **env))
    chosen = select_accounts(load_accounts(accounts), [], all_accounts=True)
    tokens = resolve_tokens(settings, chosen, env={})
    return hourly.run(settings, chosen, tokens, clock=frozen(), policy=policy)


def stored(tmp_path: Path) -> pl.DataFrame:
    """Every row the runs stored under tmp_path/lake."""
    return pl.read_parquet(tmp_path / "lake/Instagram/*/insights/stories/*/*.parquet")


def assert_exact(server: SimulatorServer, frame: pl.DataFrame) -> int:
    """Every `ok` row equals the simulator's ground truth; returns how many were checked."""
    ok = frame.filter(pl.col("insights_status") == "ok")
    for row in ok.iter_rows(named=True):
        truth = server.simulator.truth(row["story_id"], NOW)
        assert truth is not None
        assert {k: row[k] for k in truth} == truth, row["story_id"]
    return ok.height


def live_count(server: SimulatorServer) -> int:
    return sum(len(server.simulator.world.live_stories(a)) for a in SEED_ACCOUNTS)
