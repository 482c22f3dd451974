"""The simulator's `story_insights` webhook sender: signed legacy deliveries as stories expire,
-1 below 5, duplicates, retries; over HTTP to the real receiver (functions-framework), then
`finalize` reads what it stored; `simulate --webhook-url` option checks."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.jobs.finalize import finalize
from ig_story_metrics.simulator import SEED_ACCOUNTS, World
from ig_story_metrics.simulator.webhooks import WebhookSender
from ig_story_metrics.storage import open_lake

from .conftest import run_cli
from .test_webhook_receiver import APP_SECRET, Receiver, serve_receiver

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Inbox:
    """Collects what the sender posts; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: list[tuple[bytes, dict[str, str]]] = []

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> int:
        self.got.append((body, dict(headers)))
        return self.status


def changes(inbox: Inbox) -> list[dict[str, object]]:
    return [
        c["value"] for body, _ in inbox.got for e in json.loads(body)["entry"] for c in e["changes"]
    ]


def test_every_expired_story_is_delivered_signed_with_legacy_values() -> None:
    """Over 6 hours, each story that expired an hour before a tick is delivered once (duplicates
    off), signed with the app secret, with the legacy keys and -1 below 5."""
    world = World(seed=0, clock=lambda: T0)
    inbox = Inbox()
    sender = WebhookSender(world, "http://x.invalid/", "s", duplicate_rate=0.0, post=inbox)
    for minutes in range(0, 6 * 60 + 1, 10):
        sender.tick(T0 + timedelta(minutes=minutes))
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=5)
    expected = {s.id for a in world.accounts for s in world.expired_between(a, start, end)}
    values = changes(inbox)
    assert sorted(v["media_id"] for v in values) == sorted(expected)
    for body, headers in inbox.got:
        digest = hmac.new(b"s", body, hashlib.sha256).hexdigest()
        assert headers["X-Hub-Signature-256"] == f"sha256={digest}"
    legacy = {"media_id", "impressions", "reach", "replies", "exits", "taps_forward", "taps_back"}
    assert all(set(v) == legacy for v in values)
    assert any(v["replies"] == -1 for v in values)
    assert all(v["reach"] == -1 or v["reach"] >= 5 for v in values)  # type: ignore[operator]


def test_duplicates_and_retries() -> None:
    """duplicate_rate 1 sends every body twice; a refused delivery is sent again next tick."""
    world = World(seed=0, clock=lambda: T0)
    twice = Inbox()
    WebhookSender(world, "http://x.invalid/", "s", duplicate_rate=1.0, post=twice).tick(T0)
    sender = WebhookSender(world, "http://x.invalid/", "s", duplicate_rate=1.0, post=twice)
    sender.since = T0
    sender.tick(T0 + timedelta(hours=3))
    assert len(twice.got) % 2 == 0
    assert twice.got[0][0] == twice.got[1][0]
    down = Inbox(status=503)
    flaky = WebhookSender(world, "http://x.invalid/", "s", duplicate_rate=0.0, post=down)
    flaky.since = T0
    assert flaky.tick(T0 + timedelta(hours=3)) == 0
    failed = [body for body, _ in down.got]
    down.status = 200
    assert flaky.tick(T0 + timedelta(hours=3)) == len(failed)
    assert [body for body, _ in down.got[len(failed) :]] == failed


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with serve_receiver(tmp_path_factory.mktemp("receiver")) as served:
        yield served


def test_sender_to_the_receiver_then_finalize(receiver: Receiver) -> None:
    """Deliveries over HTTP to functions-framework are stored under their accounts, and finalize
    turns them into webhook-only rows (the lake has no snapshots), -1 as null with a note."""
    now = datetime.now(UTC).replace(microsecond=0)
    world = World(seed=0, clock=lambda: now)
    sender = WebhookSender(world, receiver.url, APP_SECRET, duplicate_rate=0.5)
    sender.since = now - timedelta(hours=6)
    assert sender.tick(now) > 0
    assert sender.failed == 0
    with open_lake(str(receiver.lake)) as lake:
        result = finalize(lake, dict(SEED_ACCOUNTS), now, days=3)
    assert result.stories > 0
    assert result.sources == {"webhook": result.stories}
    final = pl.read_parquet(Path(receiver.lake) / "tables/story_final/*/*/*.parquet")
    noted = final.filter(pl.col("webhook_note").str.contains("replies: fewer than 5"))
    assert noted.height > 0
    assert noted["webhook_replies"].null_count() == noted.height
    assert (final["webhook_deliveries"] == 1).all()  # duplicates count once


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-url", "http://127.0.0.1:9/"], "needs --app-secret"),
        (["--app-secret", "s"], "give --webhook-url too"),
        (["--webhook-url", "ftp://x/", "--app-secret", "s"], "must start with http"),
    ],
)
def test_simulate_webhook_options_are_checked(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Wrong combinations of --webhook-url and --app-secret: exit 2, one line, nothing served."""
    done = run_cli(["simulate", "--port", "0", *args], {}, tmp_path)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
