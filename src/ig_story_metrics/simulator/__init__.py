"""A faithful fake of the Instagram Graph API, served over HTTP on loopback.

`simulator_server()` builds a world, its Graph API rules and an HTTP server in one call; start it
with `with simulator_server() as server: ...` (tests, `demo`) or `server.serve_forever()` (`simulate`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from ig_story_metrics.simulator.api import DEFAULT_TOKEN, GraphSimulator
from ig_story_metrics.simulator.faults import Faults
from ig_story_metrics.simulator.identity import (
    DEFAULT_IG_TOKEN,
    INSTAGRAM_PREFIX,
    Identity,
    both_hosts,
)
from ig_story_metrics.simulator.protocol import Answer, Request, Response
from ig_story_metrics.simulator.server import SimulatorServer
from ig_story_metrics.simulator.world import SEED_ACCOUNTS, World, utc_now

__all__ = [
    "DEFAULT_IG_TOKEN",
    "DEFAULT_TOKEN",
    "INSTAGRAM_PREFIX",
    "SEED_ACCOUNTS",
    "Answer",
    "Faults",
    "GraphSimulator",
    "Identity",
    "Request",
    "Response",
    "SimulatorServer",
    "World",
    "simulator_server",
]


def simulator_server(
    *,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    page_size: int = 25,
    clock: Callable[[], datetime] = utc_now,
    faults: Faults | None = None,
    app_secret: str | None = None,
    world: World | None = None,
) -> SimulatorServer:
    """A simulator on `host:port` (port 0: a free one), not yet serving: graph.facebook.com at
    the root, graph.instagram.com under `/instagram` (see `simulator/identity.py`). `world`
    replaces the seed world (e.g. `World.fleet(1000, 20)`; `seed` and `clock` are then its own)."""
    world = world or World(seed=seed, clock=clock)
    simulator = GraphSimulator(world, page_size=page_size, faults=faults)
    identity = Identity(world, app_secret=app_secret)
    identity.issue(DEFAULT_IG_TOKEN, kind="INSTAGRAM", expires_in=timedelta(days=60))
    return both_hosts(simulator, identity, host=host, port=port)
