"""The Graph API client's logic against the simulator in process (`SimTransport`).

The transport is the one seam: the simulator answers exactly as it does over HTTP (the same
`simulator.server.answer()`), without a socket. Runs end to end over loopback are in test_run.py,
test_failures.py and test_function.py.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, NotEnoughViewers
from ig_story_metrics.graph.insights import CallResult, Insights, fetch_insights
from ig_story_metrics.graph.outcome import story_outcome
from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.graph.stories import list_stories
from ig_story_metrics.model.metrics import NAVIGATION_PARTS, PROFILE_ACTIVITY_PARTS
from ig_story_metrics.redact import strip_secrets
from ig_story_metrics.simulator import SEED_ACCOUNTS, Faults, World

from .conftest import IN_PROCESS_URL, NOW, SECRET_TOKEN, SimTransport, frozen, make_simulator

TOKEN = SecretStr(SECRET_TOKEN)
NPI = SEED_ACCOUNTS["NPI"]


def npi(token: SecretStr = TOKEN) -> Session:
    return Session("NPI", NPI, token)


def in_process(**options: Any) -> SimTransport:
    """A simulator built with `make_simulator(**options)`, as the client's transport."""
    return SimTransport(make_simulator(**options))


def client_for(transport: SimTransport, **options: Any) -> GraphClient:
    return GraphClient(IN_PROCESS_URL, "v25.0", transport=transport, **options)


def test_listing_follows_paging_next_across_pages() -> None:
    """With 3 stories a page, every live story is listed once, in as many requests as pages."""
    transport = in_process(page_size=3)
    expected = [s.id for s in transport.simulator.world.live_stories("NPI")]
    assert len(expected) > 6  # several pages

    async def go() -> list[str]:
        async with client_for(transport) as client:
            listing = await list_stories(client, npi())
            assert listing.pages == -(-len(expected) // 3)
            return [s.id for s in listing.stories]

    assert asyncio.run(go()) == expected
    assert transport.simulator.stats.by_route["stories"] == -(-len(expected) // 3)


def test_paging_next_token_is_stripped_before_following() -> None:
    """Meta's paging.next repeats the token; the client never sends it back in a URL."""
    transport = in_process(page_size=2)

    async def go() -> None:
        async with client_for(transport) as client:
            await list_stories(client, npi())

    asyncio.run(go())
    assert transport.simulator.stats.by_route["stories"] > 2
    assert transport.simulator.stats.tokens_in_urls == 0


def test_strip_secrets_removes_token_parameters() -> None:
    """access_token and appsecret_proof are removed from a paging URL; the cursor is kept."""
    url = "https://graph.facebook.com/v25.0/1/stories?limit=25&access_token=EAAx&after=QVF&appsecret_proof=ab"
    assert strip_secrets(url) == "/v25.0/1/stories?limit=25&after=QVF"


def _transport_with_live_stories(count: int) -> SimTransport:
    """A simulator frozen at a moment when NPI has exactly `count` live stories."""
    world, at = World(), NOW
    for _ in range(2000):
        if len(world.live_stories("NPI", at)) == count:
            return in_process(clock=frozen(at))
        at += timedelta(minutes=37)
    raise AssertionError(f"no moment with {count} live NPI stories")


def test_sixteen_stories_cost_two_round_trips() -> None:
    """An account with 16 stories costs the listing (an operation of a batch) and one batch of
    48 operations."""
    transport = _transport_with_live_stories(16)

    async def go() -> int:
        async with client_for(transport) as client:
            session = npi()
            listing = await list_stories(client, session)
            insights = await fetch_insights(client, session, [s.id for s in listing.stories])
            results = insights.results
            assert len(results) == 16
            assert all(len(calls) == 3 for calls in results.values())
            return session.counters.http_requests

    assert asyncio.run(go()) == 2
    stats = transport.simulator.stats
    assert (stats.http_requests, stats.batches, stats.operations) == (2, 2, 1 + 48)


def _assert_exact(transport: SimTransport, results: dict[str, list[CallResult]]) -> int:
    """Every story read in full equals the simulator's truth; returns how many were checked."""
    checked = 0
    for story in transport.simulator.world.live_stories("NPI"):
        metrics, status, _ = story_outcome(story, results[story.id], NOW)  # type: ignore[arg-type]
        truth = transport.simulator.truth(story.id)
        assert truth is not None
        if truth["reach"] < 5:
            assert status == "not_enough_viewers"
            continue
        assert status == "ok"
        assert metrics == truth
        assert metrics["navigation"] == sum(metrics[c] or 0 for c in NAVIGATION_PARTS.values())
        assert metrics["profile_activity"] == sum(
            metrics[c] or 0 for c in PROFILE_ACTIVITY_PARTS.values()
        )
        checked += 1
    return checked


def test_insights_match_ground_truth_in_both_shapes() -> None:
    """Values read through batches equal the simulator's truth, with values and total_value shapes."""
    transport = in_process(shape="mixed")
    stories = transport.simulator.world.live_stories("NPI")

    async def go() -> Insights:
        async with client_for(transport) as client:
            return await fetch_insights(client, npi(), [s.id for s in stories])

    results = asyncio.run(go()).results
    assert _assert_exact(transport, results) >= 10
    # both shapes were actually served
    assert {transport.simulator.total_value_shaped(s.id) for s in stories} == {True, False}


def test_not_enough_viewers_is_classified_per_story(sim_transport: SimTransport) -> None:
    """A story below 5 viewers fails all its calls with (#10), classified as NotEnoughViewers."""
    transport = sim_transport
    world = transport.simulator.world
    small = [
        s
        for name in SEED_ACCOUNTS
        for s in world.live_stories(name)
        if world.story(s.id) and s.metrics(NOW)["reach"] < 5
    ]
    assert small, "the seed world has stories below the threshold"

    async def go() -> None:
        async with client_for(transport) as client:
            insights = await fetch_insights(client, npi(), [small[0].id])
            errors = [r.error for r in insights.results[small[0].id]]
            assert all(isinstance(e, NotEnoughViewers) for e in errors)

    asyncio.run(go())


def test_unknown_token_is_account_fatal_and_not_echoed(sim_transport: SimTransport) -> None:
    """A token the API does not know fails with #190; the error text does not contain it."""

    async def go() -> None:
        async with client_for(sim_transport) as client:
            with pytest.raises(AccountFatal) as info:
                await list_stories(client, npi(SecretStr("EAAwrong-token-value-123")))
            assert info.value.code == 190
            assert "EAAwrong" not in str(info.value)

    asyncio.run(go())


def test_failed_answers_are_retried_after_the_waits_the_policy_decides() -> None:
    """5xx answers, dropped connections, HTML pages and null batch slots are retried to the exact
    values; each wait is one the policy decided (a recording sleep: no time passes)."""
    faults = Faults(seed=3, transient_rate=0.2, drop_rate=0.2, html_rate=0.2, null_rate=0.1)
    transport = in_process(faults=faults)
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(max_attempts=10, base_seconds=1, max_seconds=8, rng=random.Random(2))
    session = npi()

    async def go() -> dict[str, list[CallResult]]:
        async with client_for(transport, policy=policy, sleep=record) as client:
            listing = await list_stories(client, session)
            insights = await fetch_insights(client, session, [s.id for s in listing.stories])
            return insights.results

    results = asyncio.run(go())
    assert transport.replies["drop"] > 0
    assert transport.replies["html"] > 0
    assert _assert_exact(transport, results) >= 10
    counters = session.counters
    assert counters.retries > 0
    assert counters.waits == len(slept) > 0
    assert counters.wait_seconds == pytest.approx(sum(slept))
    assert all(0.5 <= s <= 8 for s in slept)  # backoffs: half to all of 1, 2, 4, 8 s


def test_a_scaled_policy_makes_the_same_decisions_with_tiny_waits() -> None:
    """`RetryPolicy(scale=...)` keeps every decision and shrinks every wait: the same faults end in
    the same values and the same number of retries, with waits a thousandth as long."""
    faults = Faults(seed=11, transient_rate=0.25, null_rate=0.1)

    def run(scale: float) -> tuple[int, float, dict[str, Any]]:
        transport = in_process(faults=faults)
        slept: list[float] = []

        async def record(seconds: float) -> None:
            slept.append(seconds)

        policy = RetryPolicy(max_attempts=10, scale=scale, rng=random.Random(3))
        session = npi()

        async def go() -> dict[str, Any]:
            async with client_for(transport, policy=policy, sleep=record) as client:
                listing = await list_stories(client, session)
                insights = await fetch_insights(client, session, [s.id for s in listing.stories])
                return {k: [(r.payload, r.error) for r in v] for k, v in insights.results.items()}

        values = asyncio.run(go())
        assert session.counters.wait_seconds == pytest.approx(sum(slept))
        return session.counters.retries, session.counters.wait_seconds, values

    retries, waited, values = run(1.0)
    fast_retries, fast_waited, fast_values = run(0.001)
    assert retries == fast_retries > 0
    assert fast_waited == pytest.approx(waited / 1000)
    assert repr(fast_values) == repr(values)


def test_a_call_cancelled_while_its_operations_wait_leaves_the_others_their_answers() -> None:
    """Two accounts of one token share the packer. NPI's call is cancelled while its operations
    wait in the queue: it stops waiting, its operations still travel (in LT's batch) and their
    answers are dropped; LT gets every answer of its own, in order, and nobody is left waiting."""
    transport = in_process()
    world = transport.simulator.world
    lt = Session("LT", SEED_ACCOUNTS["LT"], TOKEN)
    urls = {
        name: [f"{s.id}/insights?metric=reach" for s in world.live_stories(name)[:3]]
        for name in ("NPI", "LT")
    }

    async def go() -> tuple[list[int | None], dict[int, int], int]:
        async with client_for(transport) as client:
            packer = client.packer
            with packer.member(npi()), packer.member(lt):
                first = asyncio.ensure_future(packer.batch(npi(), urls["NPI"]))
                await asyncio.sleep(0)  # queued; LT is capturing, not waiting: the batch lingers
                first.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await first
                answers = await packer.batch(lt, urls["LT"])
            queue = next(iter(packer._queues.values()))
            return [a.status for a in answers], dict(queue.waiting), queue.members

    statuses, waiting, members = asyncio.run(go())
    assert statuses == [200, 200, 200]
    assert waiting == {}
    assert members == 0
    assert transport.simulator.stats.batches == 1
    assert transport.simulator.stats.by_route["insights"] == 6
