"""Token health: `tokens check`, and the daily `{"mode": "tokens"}` run that also renews.

For every distinct token of the configured accounts (grouped by value and login, never shown):
- Facebook Login: `debug_token` with the app token (IG_APP_ID|IG_APP_SECRET) gives validity, type,
  expiry, data-access expiry and scopes;
- Instagram Login: a `/me` probe gives validity and whose token it is; Meta tells no expiry, so
  when the account names its `token_secret`, the expiry is estimated as 60 days after the secret's
  latest version was stored (which is when `tokens refresh` stored it).
A token fails the check when it is missing, invalid, lacks a permission, or ends (either date)
within 7 days. With `renew=True` (the daily run), a token Meta lets us renew that ends within 10
days is renewed and stored as a new version of its accounts' secrets (see `jobs/renew.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import SecretStr

from ig_story_metrics.clock import Clock, utc_now
from ig_story_metrics.errors import SetupError
from ig_story_metrics.graph.advice import missing_token_advice
from ig_story_metrics.graph.client import GraphClient, Transport
from ig_story_metrics.graph.errors import AccountFatal, GraphError
from ig_story_metrics.graph.tokens import app_token, debug_tokens, probe_instagram
from ig_story_metrics.jobs.hosts import clients_for
from ig_story_metrics.jobs.renew import renew_token, secret_store
from ig_story_metrics.model.accounts import Account, Login
from ig_story_metrics.model.tokens import (
    INSTAGRAM_LIFETIME,
    TokenFacts,
    alert_threshold,
    days_left,
    deadlines,
    display_expiry,
    due_for_refresh,
    missing_scopes,
    problems,
)
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.report.tokens import Deadline, TokensReport, TokenStatus
from ig_story_metrics.settings import Settings, lookup_token
from ig_story_metrics.storage.secrets import SecretStore, SecretStoreError


@dataclass(slots=True)
class TokenGroup:
    """The accounts sharing one token on one host."""

    token: SecretStr
    login: Login
    accounts: list[Account]

    @property
    def variables(self) -> list[str]:
        return sorted({a.token_variable for a in self.accounts})

    @property
    def secrets(self) -> list[str]:
        return sorted({a.token_secret for a in self.accounts if a.token_secret})


def group_tokens(
    settings: Settings, accounts: Sequence[Account], env: Mapping[str, str] | None = None
) -> tuple[list[TokenGroup], list[TokenStatus]]:
    """Distinct tokens with their accounts, and a failed status per account without a token."""
    groups: dict[tuple[str, str], TokenGroup] = {}
    missing = []
    for account in accounts:
        token = lookup_token(settings, account, env)
        if token is None:
            missing.append(
                TokenStatus(
                    variables=[account.token_variable],
                    accounts=[account.name],
                    login=account.login,
                    secrets=[account.token_secret] if account.token_secret else [],
                    problems=[missing_token_advice(account)],
                )
            )
            continue
        register_secrets([token.get_secret_value()])  # masked in every text from now on
        key = (token.get_secret_value(), account.login)
        groups.setdefault(key, TokenGroup(token, account.login, [])).accounts.append(account)
    return list(groups.values()), missing


def check(
    settings: Settings,
    accounts: Sequence[Account],
    *,
    env: Mapping[str, str] | None = None,
    renew: bool = False,
    transport: Transport | None = None,
    clock: Clock = utc_now,
) -> TokensReport:
    """The synchronous entry point (CLI, Cloud Function); see `check_async`."""
    return asyncio.run(
        check_async(settings, accounts, env=env, renew=renew, transport=transport, clock=clock)
    )


async def check_async(
    settings: Settings,
    accounts: Sequence[Account],
    *,
    env: Mapping[str, str] | None = None,
    renew: bool = False,
    transport: Transport | None = None,
    clock: Clock = utc_now,
) -> TokensReport:
    """Every distinct token's health; with `renew`, due tokens renewed into their secrets.
    Raises `SetupError` when Facebook tokens cannot be inspected (no or refused app credentials)."""
    now = clock()
    groups, statuses = group_tokens(settings, accounts, env)
    store = secret_store(settings) if any(g.secrets for g in groups) else None
    try:
        async with clients_for(settings, [g.login for g in groups], transport=transport) as hosts:
            facts = await _facts(settings, hosts, groups)
            for group, said in zip(groups, facts, strict=True):
                fact, notes = _estimate(said, group, store)
                renewed: list[str] = []
                if renew and due_for_refresh(fact, group.login, now):
                    fact, renewed, note = await renew_token(
                        settings, hosts[group.login], group.token, fact, group.secrets, store, now
                    )
                    notes += [note] if note else []
                statuses.append(status_of(group, fact, now, notes, renewed))
    finally:
        if store is not None:
            store.close()
    return TokensReport(checked_at=now, tokens=statuses)


async def _facts(
    settings: Settings, hosts: Mapping[Login, GraphClient], groups: Sequence[TokenGroup]
) -> list[TokenFacts]:
    """What Meta says about each group's token, in the groups' order."""
    found: dict[int, TokenFacts] = {}
    facebook = [i for i, g in enumerate(groups) if g.login == "facebook"]
    if facebook:
        if not settings.app_id or settings.app_secret is None:
            raise SetupError(
                "checking Facebook Login tokens needs the app: set IG_APP_ID and IG_APP_SECRET "
                "(debug_token is called with the app token)"
            )
        app = app_token(settings.app_id, settings.app_secret)
        try:
            answers = await debug_tokens(
                hosts["facebook"], app, [groups[i].token for i in facebook]
            )
        except AccountFatal as exc:
            raise SetupError(f"Meta refuses IG_APP_ID/IG_APP_SECRET: {exc.describe()}") from None
        except GraphError as exc:
            answers = [TokenFacts(valid=False, error=f"not checked: {exc.describe()}")] * len(
                facebook
            )
        found.update(zip(facebook, answers, strict=True))
    for i, group in enumerate(groups):
        if group.login == "instagram":
            found[i] = await probe_instagram(hosts["instagram"], group.token)
    return [found[i] for i in range(len(groups))]


def _estimate(
    fact: TokenFacts, group: TokenGroup, store: SecretStore | None
) -> tuple[TokenFacts, list[str]]:
    """An Instagram token's expiry, estimated from when its secret's latest version was stored."""
    if group.login != "instagram" or not fact.valid:
        return fact, []
    if not group.secrets or store is None:
        return fact, [
            "expiry unknown: Meta does not tell it for Instagram Login tokens; name the "
            "account's token_secret so that it is tracked and renewed"
        ]
    try:
        stored = store.latest_created(group.secrets[0])
    except SecretStoreError as exc:
        return fact, [f"expiry unknown: {exc}"]
    if stored is None:
        return fact, [f"expiry unknown: secret {group.secrets[0]} has no version yet"]
    estimate = replace(fact, expires_at=stored + INSTAGRAM_LIFETIME, expiry_estimated=True)
    return estimate, [f"expiry estimated: 60 days after {group.secrets[0]} was last stored"]


def status_of(
    group: TokenGroup,
    fact: TokenFacts,
    now: datetime,
    notes: list[str],
    renewed: list[str],
) -> TokenStatus:
    """The report line of one token (never the token itself)."""
    data_access = fact.data_access_expires_at
    return TokenStatus(
        variables=group.variables,
        accounts=[a.name for a in group.accounts],
        login=group.login,
        secrets=group.secrets,
        kind=fact.kind,
        valid=fact.valid,
        owner=fact.owner,
        expires_at=display_expiry(fact),
        data_access_expires_at=None if data_access is None else f"{data_access:%Y-%m-%d %H:%M} UTC",
        deadlines=[
            Deadline(
                what=what,
                at=at,
                days_left=days_left(at, now),
                alert=alert_threshold(at, now) is not None,
            )
            for what, at in deadlines(fact)
        ],
        missing_permissions=missing_scopes(fact, group.login),
        permissions_checked=fact.scopes is not None,
        problems=problems(fact, group.login, now),
        notes=notes,
        renewed=renewed,
    )
