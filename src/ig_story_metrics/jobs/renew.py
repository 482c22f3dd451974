"""Renewing tokens where Meta allows it, and storing them in Secret Manager.

- Instagram Login: `GET /refresh_access_token?grant_type=ig_refresh_token` (the token must be at
  least 24 hours old): 60 more days.
- Facebook Login, a long-lived user token (or an expiring system-user token): `fb_exchange_token`
  with the app id and secret: a new 60-day token. Its data access (90 days after the person last
  used the app) is not extended by this: only logging in again does that.
- Page tokens and system-user tokens that never expire: nothing to do.

The new token is stored as a new version of each account's `token_secret`; a deployment that maps
the secret's `latest` version to the token variable picks it up at its next start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, utc_now
from ig_story_metrics.errors import IgStoryMetricsError, SetupError
from ig_story_metrics.graph.advice import missing_token_advice
from ig_story_metrics.graph.client import GraphClient, Transport
from ig_story_metrics.graph.errors import AccountFatal, GraphError
from ig_story_metrics.graph.tokens import (
    NewToken,
    app_token,
    debug_tokens,
    exchange_facebook,
    probe_instagram,
    refresh_instagram,
)
from ig_story_metrics.jobs.hosts import clients_for
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.tokens import INSTAGRAM_LIFETIME, TokenFacts, may_refresh
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.settings import Settings, lookup_token
from ig_story_metrics.storage.secrets import SecretStore, SecretStoreError


class RenewError(IgStoryMetricsError):
    """The token could not be renewed (exit code 1); the message says why and what to do."""


@dataclass(slots=True)
class Renewal:
    """What `tokens refresh NAME` did."""

    account: str
    message: str
    renewed: bool = False
    versions: list[str] = field(default_factory=list)
    token: SecretStr | None = None  # the new token, only when it is to be printed


def secret_store(settings: Settings) -> SecretStore:
    return SecretStore(
        settings.google_cloud_project, emulator_host=settings.secret_manager_emulator_host
    )


async def inspect(settings: Settings, client: GraphClient, token: SecretStr) -> TokenFacts:
    """debug_token (Facebook Login, needs the app) or a /me probe (Instagram Login)."""
    if client.login == "instagram":
        return await probe_instagram(client, token)
    if not settings.app_id or settings.app_secret is None:
        raise SetupError(
            "Facebook Login tokens are inspected with the app: set IG_APP_ID and IG_APP_SECRET"
        )
    try:
        (facts,) = await debug_tokens(
            client, app_token(settings.app_id, settings.app_secret), [token]
        )
    except AccountFatal as exc:
        raise SetupError(f"Meta refuses IG_APP_ID/IG_APP_SECRET: {exc.describe()}") from None
    return facts


async def renewed(
    settings: Settings, client: GraphClient, token: SecretStr, facts: TokenFacts
) -> NewToken:
    """A new token from Meta for one it lets us renew."""
    if client.login == "instagram":
        return await refresh_instagram(client, token)
    if not settings.app_id or settings.app_secret is None:
        raise SetupError("renewing a Facebook token needs IG_APP_ID and IG_APP_SECRET")
    return await exchange_facebook(
        client,
        settings.app_id,
        settings.app_secret,
        token,
        system_user=facts.kind == "SYSTEM_USER",
    )


async def renew_token(
    settings: Settings,
    client: GraphClient,
    token: SecretStr,
    facts: TokenFacts,
    secrets: Sequence[str],
    store: SecretStore | None,
    now: datetime,
) -> tuple[TokenFacts, list[str], str | None]:
    """The daily run's renewal of a due token: (facts after, secret versions written, note)."""
    if not secrets or store is None:
        return (
            facts,
            [],
            (
                "renewal failed: the token is due for renewal but no account using it names a "
                "token_secret to store the new one in"
            ),
        )
    try:
        new = await renewed(settings, client, token, facts)
        versions = [await asyncio.to_thread(store.add_version, s, new.token) for s in secrets]
    except (GraphError, SecretStoreError) as exc:
        return facts, [], f"renewal failed: {exc}"
    return replace(facts, expires_at=expiry(new, now), expiry_estimated=False), versions, None


def expiry(new: NewToken, now: datetime) -> datetime:
    seconds = new.expires_in if new.expires_in and new.expires_in > 0 else None
    return now + (timedelta(seconds=seconds) if seconds else INSTAGRAM_LIFETIME)


def refresh(
    settings: Settings,
    account: Account,
    *,
    env: Mapping[str, str] | None = None,
    keep: bool = False,
    transport: Transport | None = None,
    clock: Clock = utc_now,
) -> Renewal:
    """`tokens refresh NAME`: see `refresh_async`."""
    return asyncio.run(
        refresh_async(settings, account, env=env, keep=keep, transport=transport, clock=clock)
    )


async def refresh_async(
    settings: Settings,
    account: Account,
    *,
    env: Mapping[str, str] | None = None,
    keep: bool = False,
    transport: Transport | None = None,
    clock: Clock = utc_now,
) -> Renewal:
    """Renew the account's token and store it in its `token_secret` (and hand it back when `keep`,
    for printing). Refuses before asking Meta when there is nowhere to put the new token."""
    token = lookup_token(settings, account, env)
    if token is None:
        raise SetupError(missing_token_advice(account))
    register_secrets([token.get_secret_value()])
    if not account.token_secret and not keep:
        raise SetupError(
            f'account {account.name} names no token_secret: add token_secret = "SECRET" to its '
            "entry to store the renewed token in Secret Manager, or pass --print on a terminal"
        )
    home = account.token_variable
    async with clients_for(settings, [account.login], transport=transport) as hosts:
        client = hosts[account.login]
        facts = await inspect(settings, client, token)
        if not facts.valid:
            raise RenewError(
                f"the token in {home} is not valid ({facts.error}): it cannot be renewed; "
                "create a new one"
            )
        if facts.never_expires:
            return Renewal(
                account.name,
                f"the token in {home} ({facts.kind} token) never expires: nothing to renew",
            )
        if not may_refresh(facts, account.login):
            raise RenewError(
                f"the token in {home} is a {facts.kind} token that Meta does not renew: create a "
                "new one (a system-user token from Business Manager never expires)"
            )
        try:
            new = await renewed(settings, client, token, facts)
        except GraphError as exc:
            raise RenewError(f"Meta did not renew the token in {home}: {exc.describe()}") from None
    return await _store(settings, account, new, keep, clock())


async def _store(
    settings: Settings, account: Account, new: NewToken, keep: bool, now: datetime
) -> Renewal:
    until = f"{expiry(new, now):%Y-%m-%d} UTC"
    done = Renewal(account.name, f"renewed the token of {account.name} (valid until {until})")
    done.renewed = True
    if account.token_secret:
        store = secret_store(settings)
        try:
            version = await asyncio.to_thread(store.add_version, account.token_secret, new.token)
        except SecretStoreError as exc:
            raise RenewError(f"the token was renewed but not stored: {exc}") from None
        finally:
            store.close()
        done.versions.append(version)
        done.message += (
            f": stored as {version}; deployments reading {account.token_secret}:latest pick it "
            "up when they next start"
        )
    if keep:
        done.token = new.token
    return done
