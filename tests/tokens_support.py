"""Helpers for the accounts-and-tokens tests: both simulated hosts, tokens of each kind, a scan for
leaked secrets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from ig_story_metrics.simulator import GraphSimulator, Identity, SimulatorServer, World
from ig_story_metrics.simulator.identity import INSTAGRAM_PREFIX, both_hosts

from .conftest import SECRET_TOKEN, frozen

FB_TOKEN = SECRET_TOKEN
# Look like real ones, so that a leak would be obvious in any output or file.
IG_TOKEN = "IGAATestSecretInstagramToken0123456789xyz"
APP_ID = "1000000000000042"
APP_SECRET = "appsecretTest0123456789abcdefSECRETzz"


def hosts(
    *,
    clock: Callable[[], datetime] | None = None,
    app_secret: str | None = None,
    require_proof: bool = True,
    usernames: Mapping[str, str] | None = None,
    ig_accounts: Iterable[str] = ("LT",),
) -> tuple[SimulatorServer, Identity]:
    """Both hosts over one world: FB_TOKEN a never-expiring system-user token for every account,
    IG_TOKEN an Instagram Login token (50 days left) for `ig_accounts`."""
    world = World(clock=clock or frozen())
    simulator = GraphSimulator(world, tokens={FB_TOKEN: None})
    identity = Identity(
        world,
        app_id=APP_ID,
        app_secret=app_secret,
        require_proof=require_proof,
        usernames=usernames,
    )
    identity.issue(
        IG_TOKEN,
        kind="INSTAGRAM",
        accounts=frozenset(ig_accounts),
        expires_in=timedelta(days=50),
    )
    return both_hosts(simulator, identity), identity


def instagram_url(server: SimulatorServer) -> str:
    return server.url + INSTAGRAM_PREFIX


def instagram_host(server: SimulatorServer) -> GraphSimulator:
    return server.hosts[INSTAGRAM_PREFIX]


def leaks(
    secrets: Iterable[str], texts: Iterable[str] = (), files: Iterable[Path] = ()
) -> list[str]:
    """Where any of `secrets` appears: in the texts, or in the bytes of the files (lake, logs)."""
    found = []
    wanted = [s for s in secrets if s]
    for i, text in enumerate(texts):
        found += [f"text {i}" for s in wanted if s in text]
    for path in files:
        data = path.read_bytes()
        found += [str(path) for s in wanted if s.encode() in data]
    return found


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
