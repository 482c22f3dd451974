"""Fleets: the simulator's synthetic accounts and delay, and insights packed across accounts."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ig_story_metrics.clock import Deadline
from ig_story_metrics.graph.pools import MAX_CONNECTIONS, POOL_SIZE, Pools
from ig_story_metrics.jobs import hourly
from ig_story_metrics.jobs.capture import JUDGED_WRITES, SLOW_WAIT_SECONDS
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import load_settings, resolve_tokens
from ig_story_metrics.simulator import SEED_ACCOUNTS, Faults, GraphSimulator, SimulatorServer, World
from ig_story_metrics.simulator.api import Stats
from ig_story_metrics.simulator.server import answer
from ig_story_metrics.simulator.world import fleet_accounts
from ig_story_metrics.storage import Lake, locks
from ig_story_metrics.storage.gcs import GcsBackend
from ig_story_metrics.storage.layout import schema_key, table_key
from ig_story_metrics.storage.local import MAX_WRITERS, LocalBackend

from .conftest import FAST, NOW, SECRET_TOKEN, frozen


def test_fleet_accounts_keep_exactly_m_live_stories_and_the_seed_accounts_stay() -> None:
    """World.fleet: every synthetic account has exactly M live stories at any moment, each found
    by its id; the seed accounts post as before."""
    world = World.fleet(120, 7, clock=frozen())
    seed = World(clock=frozen())
    for name in SEED_ACCOUNTS:
        assert [s.id for s in world.live_stories(name)] == [s.id for s in seed.live_stories(name)]
    for minutes in (0, 13, 601, 1439):
        at = NOW + timedelta(minutes=minutes)
        for name in ("fleet0001", "fleet0099", "fleet0120"):
            live = world.live_stories(name, at)
            assert len(live) == 7
            assert all(world.story(s.id) == s for s in live)
    assert len(fleet_accounts(120)) == len(set(fleet_accounts(120).values())) == 120


def test_latency_delays_every_answer() -> None:
    """Faults.latency_seconds: the HTTP layer sleeps that long before every answer."""
    simulator = GraphSimulator(faults=Faults(latency_seconds=0.25))
    slept: list[float] = []
    reply = answer(simulator, "GET", "/v25.0/me", [], b"", sleep=slept.append)
    assert reply is not None
    assert slept == [0.25]
    assert not simulator.faults.any  # a delay breaks nothing


def _fleet_run(
    tmp_path: Path,
    accounts: int,
    stories: int,
    faults: Faults | None = None,
    lake: Lake | None = None,
) -> tuple[RunReport, Stats]:
    """One hourly run over a fleet sharing one token (media archive off: the CDN is not what
    these tests are about): its report and what the simulator served."""
    simulator = GraphSimulator(
        World.fleet(accounts, stories, clock=frozen()),
        tokens={SECRET_TOKEN: None},
        faults=faults or Faults(),
    )
    with SimulatorServer(simulator) as server:
        env = {
            "IG_ACCESS_TOKEN": SECRET_TOKEN,
            "IG_GRAPH_API_URL": server.url,
            "STORAGE_URL": str(tmp_path / "lake"),
            "IG_ARCHIVE_MEDIA": "false",
        }
        settings = load_settings(env)
        fleet = [Account(name, uid) for name, uid in fleet_accounts(accounts).items()]
        tokens = resolve_tokens(settings, fleet, env={})
        report = hourly.run(settings, fleet, tokens, lake=lake, clock=frozen(), policy=FAST)
    return report, simulator.stats


def test_insights_of_accounts_sharing_a_token_fill_batches(tmp_path: Path) -> None:
    """30 accounts x 4 stories (12 operations each) with one token: their insights travel in
    full batches of 50 across accounts, not one part-filled batch per account, and the per-account
    counters add up to what the simulator served."""
    report, stats = _fleet_run(tmp_path, 30, 4)
    assert report.exit_code == 0
    insights = stats.by_route["insights"]
    assert insights == 30 * 4 * 3
    # alone, each account sends its own part-filled batch: 30; packed, 8 and a few flushed early
    # by the linger (how many depends on when the listings come back)
    assert math.ceil(insights / 50) <= stats.batches <= 15
    assert sum(a.http_requests for a in report.accounts) == stats.http_requests
    assert sum(a.operations for a in report.accounts) == insights + stats.by_route["stories"]
    assert all(a.operations == 1 + 4 * 3 for a in report.accounts)
    frame = pl.read_parquet(tmp_path / "lake/Instagram/*/insights/stories/*/*.parquet")
    assert frame.height == 30 * 4
    assert frame.group_by("account").len()["len"].to_list() == [4] * 30


def test_an_account_about_to_send_its_next_calls_does_not_let_a_part_filled_batch_go(
    tmp_path: Path,
) -> None:
    """5 accounts x 20 stories with one token: the 5 listings in one batch, then 60 insights
    operations each (a first batch of 50, then 10 once it is answered): 300 operations in exactly
    6 full batches. Two ways to lose a round trip, both seen: the first account to start sent its
    listing alone, before the others had queued theirs (8 requests); and when the last shared
    batch is answered, its accounts are about to send their next calls, so the packer must not
    take them for idle and flush the operations queued so far (7 insights batches, one of 40,
    one of 10)."""
    report, stats = _fleet_run(tmp_path, 5, 20, Faults(latency_seconds=0.05))
    assert report.exit_code == 0
    assert stats.by_route["stories"] == 5
    assert stats.by_route["insights"] == 300
    assert stats.batches == 1 + 6
    assert stats.http_requests == 1 + 6


def test_an_account_sends_two_batches_at_once_and_probes_before_a_third(tmp_path: Path) -> None:
    """views refused for every story. 20 stories (60 operations, two batches): both batches go
    at once, so each story's call for views is asked again without it (20 more operations).
    40 stories (120 operations): the first batch goes alone and teaches the refusal, so only its
    17 stories are asked again and the other 70 operations leave views out."""
    rejected = Faults(rejected_metrics=frozenset({"views"}))
    for stories, again in ((20, 20), (40, 17)):
        report, stats = _fleet_run(tmp_path / str(stories), 1, stories, rejected)
        assert report.exit_code == 0
        assert report.accounts[0].rejected_metrics == ["views"]
        assert stats.by_route["insights"] == stories * 3 + again
        errors = [p.error or "" for p in report.accounts[0].problems]
        assert len(errors) == stories  # every row partial (views null) or withheld, saying why
        not_asked = sum("not asked: views" in e for e in errors)
        assert (not_asked > 0) == (stories == 40)


def test_the_simulator_accepts_a_fleet_of_connections_at_once() -> None:
    """socketserver listens with a backlog of 5: a client opening dozens of connections at once
    had its SYNs dropped and retried a second later, a delay Meta does not add (the benchmark's
    baseline took 7.6 s instead of 2.6 s at 5 x 20)."""
    with SimulatorServer(GraphSimulator()) as server:
        assert server._server.request_queue_size >= 256


def test_the_connection_pools_are_made_as_the_requests_need_them() -> None:
    """64 connections in pools of 4: a run that sends one request at a time makes one httpx
    client (each costs milliseconds to make), requests side by side spread over new ones, and
    closing closes every one made (over a socket: the simulator with a short delay)."""
    with SimulatorServer(GraphSimulator(faults=Faults(latency_seconds=0.02))) as server:

        async def go() -> tuple[int, int, bool]:
            pools = Pools(server.url, transport=None, timeout=5)
            for _ in range(3):
                response, _ = await pools.carry(pools.build_request("GET", "v25.0/1/stories"))
                assert response.status_code == 400  # no token: the simulator's answer
            alone = sum(p.client is not None for p in pools._pools)
            requests = [pools.build_request("GET", "v25.0/1/stories") for _ in range(10)]
            await asyncio.gather(*(pools.carry(r) for r in requests))
            made = [p.client for p in pools._pools if p.client is not None]
            await pools.aclose()
            return alone, len(made), all(c.is_closed for c in made)

        alone, side_by_side, closed = asyncio.run(go())
    assert MAX_CONNECTIONS // POOL_SIZE == 16
    assert alone == 1
    assert side_by_side == 10
    assert closed


class _WatchedFolder(LocalBackend):
    """A local folder that notes which threads write which files, and how many Parquet files at
    once; each Parquet write takes `pause` seconds more (a slow disk, or time for the other
    accounts' writes to arrive meanwhile)."""

    def __init__(self, root: Path, *, writers: int = 2, inline: bool, pause: float) -> None:
        super().__init__(root, writers=writers)
        self.inline = inline
        self.pause = pause
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.writes: list[tuple[str, str]] = []  # (thread, key) of each write, in order

    def write(self, key: str, data: Any, **more: Any) -> None:
        with self.lock:
            self.writes.append((threading.current_thread().name, key))
        if not key.endswith(".parquet"):
            return super().write(key, data, **more)
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.pause)
            super().write(key, data, **more)
        finally:
            with self.lock:
                self.now -= 1

    def threads(self, suffix: str = ".parquet") -> list[str]:
        return [thread for thread, key in self.writes if key.endswith(suffix)]


def test_a_run_stores_through_as_many_threads_as_the_lake_writes_at_once(tmp_path: Path) -> None:
    """A backend whose writes wait (`inline` false: a bucket) is written by the run's own
    threads, `Backend.writers` of them: a local folder one per CPU (more only switched the
    interpreter between them: 180,000 context switches at 1,000 accounts with asyncio's 6
    threads, 110,000 with 2), a bucket as many as asyncio gives, since its writes wait on the
    network. Every account is stored all the same."""
    folder = _WatchedFolder(tmp_path / "lake", inline=False, pause=0.02)
    report, _ = _fleet_run(tmp_path, 12, 2, lake=Lake(folder))
    assert report.exit_code == 0
    assert sum(a.stored_rows for a in report.accounts) == 24
    assert folder.most == 2
    assert len(set(folder.threads())) == 2
    assert all(name.startswith("lake-write") for name in folder.threads())
    cpus = os.cpu_count() or 1
    assert LocalBackend(tmp_path).writers == max(1, min(MAX_WRITERS, cpus))
    assert GcsBackend("bucket").writers == min(32, cpus + 4)
    assert LocalBackend(tmp_path).inline
    assert not GcsBackend("bucket").inline


def test_a_local_folder_is_written_on_the_runs_own_thread_until_its_writes_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local folder's writes cost CPU, not waits: the run makes them on its own thread, one at
    a time (a thread would hand the interpreter over at each system call). Once most of the last
    `JUDGED_WRITES` have each waited `SLOW_WAIT_SECONDS` (a slow disk: here a sleep in the
    write), the later ones go to the run's threads, and every account is stored all the same."""
    own = threading.current_thread().name
    with monkeypatch.context() as patched:  # this machine's disk flushes are not the question
        patched.setattr(os, "fsync", lambda fd: None)
        quick = _WatchedFolder(tmp_path / "quick", inline=True, pause=0.0)
        report, _ = _fleet_run(tmp_path, 12, 2, lake=Lake(quick))
    assert report.exit_code == 0
    assert sum(a.stored_rows for a in report.accounts) == 24
    assert quick.threads() == [own] * 12
    assert set(quick.threads(".json")) == {own}
    assert quick.most == 1

    slow = _WatchedFolder(tmp_path / "slow", inline=True, pause=SLOW_WAIT_SECONDS + 0.01)
    report, _ = _fleet_run(tmp_path, 12, 2, lake=Lake(slow))
    assert report.exit_code == 0
    assert sum(a.stored_rows for a in report.accounts) == 24
    threads = slow.threads()
    inline = JUDGED_WRITES // 2 + 1  # then most of the writes judged waited
    assert threads[:inline] == [own] * inline
    assert len(threads) == 12
    assert all(name.startswith("lake-write") for name in threads[inline:])


class _HeldFolder(_WatchedFolder):
    """A local folder one of whose files' lock another writer holds from the start, and lets go
    of a moment after a writer asks to wait for it; notes every lock asked for."""

    def __init__(self, root: Path, key: str) -> None:
        super().__init__(root, inline=True, pause=0.0)
        self.key = key
        path = root / key
        self.lock_path = path.parent / f".{path.name}.lock"
        self.lock_path.parent.mkdir(parents=True)
        fd = locks.try_acquire(self.lock_path)
        assert fd is not None
        self.release = threading.Timer(0.2, locks.release, (fd, self.lock_path))
        self.asked: list[tuple[str, str, bool]] = []

    @contextlib.contextmanager
    def locked(
        self, key: str, *, deadline: Deadline | None = None, wait: bool = True
    ) -> Iterator[None]:
        self.asked.append((threading.current_thread().name, key, wait))
        if key == self.key and wait and self.release.ident is None:
            self.release.start()  # the other writer finishes while this one waits
        with super().locked(key, deadline=deadline, wait=wait):
            yield

    def let_go(self) -> None:
        if self.release.ident is None:  # nobody asked to wait: let go now
            self.release.start()
        self.release.join()


@pytest.mark.parametrize("held", ["partition", "schema"])
def test_an_inline_write_whose_lock_is_held_elsewhere_waits_for_it_in_a_thread(
    tmp_path: Path, held: str
) -> None:
    """Another writer (another process) holds the lock of one account's partition, or of its
    schema, for a moment: the run's own thread does not wait for it (every other account would
    wait too); the account's write goes to the run's threads, which wait, and stores its rows
    once. With the schema's lock held, the rows were already written on the run's thread: the
    append made again replaces them (the run's own rows), it does not double them."""
    day = NOW.date()
    key = (table_key if held == "partition" else schema_key)(SNAPSHOTS, "fleet0003", day)
    folder = _HeldFolder(tmp_path / "lake", key)
    try:
        report, _ = _fleet_run(tmp_path, 6, 3, lake=Lake(folder))
    finally:
        folder.let_go()
    assert report.exit_code == 0
    assert [a.stored_rows for a in report.accounts] == [3] * 6
    own = threading.current_thread().name
    asked = [(thread == own, wait) for thread, k, wait in folder.asked if k == key]
    assert asked == [(True, False), (False, True)]  # not waited for inline; waited for in the pool
    mine = [t for t, k in folder.writes if k == table_key(SNAPSHOTS, "fleet0003", day)]
    others = [t for t, k in folder.writes if "fleet0003" not in k]
    assert set(others) == {own}
    if held == "partition":
        assert len(mine) == 1
        assert mine[0].startswith("lake-write")
    else:
        assert len(mine) == 2
        assert mine[0] == own
        assert mine[1].startswith("lake-write")
    stored = pl.read_parquet(folder.root / table_key(SNAPSHOTS, "fleet0003", day))
    assert stored.height == 3
    assert stored["story_id"].n_unique() == 3
    assert (folder.root / schema_key(SNAPSHOTS, "fleet0003", day)).is_file()
    assert not folder.lock_path.exists()
