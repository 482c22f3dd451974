"""A faithful fake of the Instagram Graph API, served over HTTP on loopback.

`simulator_server()` builds a world, its Graph API rules and an HTTP server in one call; start it
with `with simulator_server() as server: ...` (tests, `demo`) or `server.serve_forever()` (`simulate`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ig_story_metrics.simulator.faults import Faults

if TYPE_CHECKING:
    from ig_story_metrics.simulator.api import DEFAULT_TOKEN, GraphSimulator
    from ig_story_metrics.simulator.identity import DEFAULT_IG_TOKEN, INSTAGRAM_PREFIX, Identity
    from ig_story_metrics.simulator.protocol import Answer, Request, Response
    from ig_story_metrics.simulator.server import SimulatorServer
    from ig_story_metrics.simulator.world import SEED_ACCOUNTS, World

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

# The names above, from the module that defines them, imported when first read: the CLI builds
# the `simulate` command's options from `Faults` as it starts, and every command (the hourly run
# above all) would otherwise pay for the whole simulator (15 to 20 ms) it never runs.
_HOMES = {
    "DEFAULT_TOKEN": "api",
    "GraphSimulator": "api",
    "DEFAULT_IG_TOKEN": "identity",
    "INSTAGRAM_PREFIX": "identity",
    "Identity": "identity",
    "Answer": "protocol",
    "Request": "protocol",
    "Response": "protocol",
    "SimulatorServer": "server",
    "SEED_ACCOUNTS": "world",
    "World": "world",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def simulator_server(
    *,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    page_size: int = 25,
    clock: Callable[[], datetime] | None = None,
    faults: Faults | None = None,
    app_secret: str | None = None,
    world: World | None = None,
) -> SimulatorServer:
    """A simulator on `host:port` (port 0: a free one), not yet serving: graph.facebook.com at
    the root, graph.instagram.com under `/instagram` (see `simulator/identity.py`). `world`
    replaces the seed world (e.g. `World.fleet(1000, 20)`; `seed` and `clock` are then its own).
    `clock`: the world's time, the wall clock when None."""
    from ig_story_metrics.simulator.api import GraphSimulator
    from ig_story_metrics.simulator.identity import DEFAULT_IG_TOKEN, Identity, both_hosts
    from ig_story_metrics.simulator.world import World, utc_now

    world = world or World(seed=seed, clock=clock or utc_now)
    simulator = GraphSimulator(world, page_size=page_size, faults=faults)
    identity = Identity(world, app_secret=app_secret)
    identity.issue(DEFAULT_IG_TOKEN, kind="INSTAGRAM", expires_in=timedelta(days=60))
    return both_hosts(simulator, identity, host=host, port=port)
