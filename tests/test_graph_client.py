"""The Graph API client against the simulator on a real loopback port."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import SecretStr

from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import AccountFatal, NotEnoughViewers
from ig_story_metrics.graph.insights import Insights, fetch_insights
from ig_story_metrics.graph.outcome import story_outcome
from ig_story_metrics.graph.stories import list_stories
from ig_story_metrics.model.metrics import NAVIGATION_PARTS, PROFILE_ACTIVITY_PARTS
from ig_story_metrics.redact import strip_secrets
from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer, World

from .conftest import NOW, SECRET_TOKEN, frozen, make_server

TOKEN = SecretStr(SECRET_TOKEN)
NPI = SEED_ACCOUNTS["NPI"]


def npi(token: SecretStr = TOKEN) -> Session:
    return Session("NPI", NPI, token)


def client_for(server: SimulatorServer) -> GraphClient:
    return GraphClient(server.url, "v25.0")


def test_listing_follows_paging_next_across_pages() -> None:
    """With 3 stories a page, every live story is listed once, in as many requests as pages."""
    with make_server(page_size=3) as server:
        expected = [s.id for s in server.simulator.world.live_stories("NPI")]
        assert len(expected) > 6  # several pages

        async def go() -> list[str]:
            async with client_for(server) as client:
                session = npi()
                listing = await list_stories(client, session)
                assert listing.pages == -(-len(expected) // 3)
                return [s.id for s in listing.stories]

        assert asyncio.run(go()) == expected
        assert server.simulator.stats.by_route["stories"] == -(-len(expected) // 3)


def test_paging_next_token_is_stripped_before_following() -> None:
    """Meta's paging.next repeats the token; the client never sends it back in a URL."""
    with make_server(page_size=2) as server:

        async def go() -> None:
            async with client_for(server) as client:
                await list_stories(client, npi())

        asyncio.run(go())
        assert server.simulator.stats.by_route["stories"] > 2
        assert server.simulator.stats.tokens_in_urls == 0


def test_strip_secrets_removes_token_parameters() -> None:
    """access_token and appsecret_proof are removed from a paging URL; the cursor is kept."""
    url = "https://graph.facebook.com/v25.0/1/stories?limit=25&access_token=EAAx&after=QVF&appsecret_proof=ab"
    assert strip_secrets(url) == "/v25.0/1/stories?limit=25&after=QVF"


def _server_with_live_stories(count: int) -> SimulatorServer:
    """A simulator frozen at a moment when NPI has exactly `count` live stories."""
    world, at = World(), NOW
    for _ in range(2000):
        if len(world.live_stories("NPI", at)) == count:
            return make_server(clock=frozen(at))
        at += timedelta(minutes=37)
    raise AssertionError(f"no moment with {count} live NPI stories")


def test_sixteen_stories_cost_two_round_trips() -> None:
    """An account with 16 stories costs the listing and one batch of 48 operations."""
    server = _server_with_live_stories(16)
    with server:

        async def go() -> int:
            async with client_for(server) as client:
                session = npi()
                listing = await list_stories(client, session)
                insights = await fetch_insights(client, session, [s.id for s in listing.stories])
                results = insights.results
                assert len(results) == 16
                assert all(len(calls) == 3 for calls in results.values())
                return session.counters.http_requests

        assert asyncio.run(go()) == 2
        assert server.simulator.stats.http_requests == 2
        assert server.simulator.stats.batches == 1
        assert server.simulator.stats.operations == 48


def test_insights_match_ground_truth_in_both_shapes() -> None:
    """Values read through batches equal the simulator's truth, with values and total_value shapes."""
    with make_server(shape="mixed") as server:
        world = server.simulator.world
        stories = world.live_stories("NPI")

        async def go() -> Insights:
            async with client_for(server) as client:
                return await fetch_insights(client, npi(), [s.id for s in stories])

        results = asyncio.run(go()).results
        checked = 0
        for story in stories:
            metrics, status, _ = story_outcome(story, results[story.id], NOW)
            truth = server.simulator.truth(story.id)
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
        assert checked >= 10
        # both shapes were actually served
        assert {server.simulator.total_value_shaped(s.id) for s in stories} == {True, False}


def test_not_enough_viewers_is_classified_per_story() -> None:
    """A story below 5 viewers fails all its calls with (#10), classified as NotEnoughViewers."""
    with make_server() as server:
        world = server.simulator.world
        small = [
            s
            for name in SEED_ACCOUNTS
            for s in world.live_stories(name)
            if world.story(s.id) and s.metrics(NOW)["reach"] < 5
        ]
        assert small, "the seed world has stories below the threshold"

        async def go() -> None:
            async with client_for(server) as client:
                insights = await fetch_insights(client, npi(), [small[0].id])
                errors = [r.error for r in insights.results[small[0].id]]
                assert all(isinstance(e, NotEnoughViewers) for e in errors)

        asyncio.run(go())


def test_unknown_token_is_account_fatal_and_not_echoed() -> None:
    """A token the API does not know fails with #190; the error text does not contain it."""
    with make_server() as server:

        async def go() -> None:
            async with client_for(server) as client:
                with pytest.raises(AccountFatal) as info:
                    await list_stories(client, npi(SecretStr("EAAwrong-token-value-123")))
                assert info.value.code == 190
                assert "EAAwrong" not in str(info.value)

        asyncio.run(go())
