"""One Graph client per host: Facebook Login accounts on IG_GRAPH_API_URL, Instagram Login accounts
on IG_INSTAGRAM_API_URL, each with the app secret for `appsecret_proof` when it is set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

from ig_story_metrics.clock import Deadline
from ig_story_metrics.graph.client import GraphClient, Transport
from ig_story_metrics.graph.retry import RetryPolicy
from ig_story_metrics.model.accounts import Login
from ig_story_metrics.settings import Settings


def policy_for(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.backoff_base_seconds,
        max_seconds=settings.backoff_max_seconds,
        pause_percent=settings.usage_pause_percent,
    )


def host_url(settings: Settings, login: Login) -> str:
    return settings.instagram_api_url if login == "instagram" else settings.graph_api_url


def client_for(
    settings: Settings,
    login: Login,
    *,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    deadline: Deadline | None = None,
) -> GraphClient:
    """A client for the host of `login`, with the settings' timeout, retries and app secret."""
    return GraphClient(
        host_url(settings, login),
        settings.graph_api_version,
        transport=transport,
        timeout=settings.request_timeout_seconds,
        policy=policy or policy_for(settings),
        deadline=deadline,
        app_secret=settings.app_secret,
        login=login,
        extra_metrics=settings.extra_metrics,
    )


@asynccontextmanager
async def clients_for(
    settings: Settings,
    logins: Iterable[Login],
    *,
    transport: Transport | None = None,
    policy: RetryPolicy | None = None,
    deadline: Deadline | None = None,
) -> AsyncIterator[dict[Login, GraphClient]]:
    """One open client per distinct login, all closed when the block ends."""
    async with AsyncExitStack() as stack:
        clients: dict[Login, GraphClient] = {}
        for login in sorted(set(logins)):
            client = client_for(
                settings, login, transport=transport, policy=policy, deadline=deadline
            )
            clients[login] = await stack.enter_async_context(client)
        yield clients
