"""`accounts discover`: the accounts a token can read, as an accounts file ready to save."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pydantic import SecretStr

from ig_story_metrics.errors import SetupError
from ig_story_metrics.graph.accounts import facebook_accounts, instagram_account
from ig_story_metrics.graph.client import Transport
from ig_story_metrics.jobs.hosts import clients_for
from ig_story_metrics.model.accounts import Login
from ig_story_metrics.model.discovery import accounts_toml
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.settings import Settings, read_variable

DEFAULT_VARIABLE = "IG_ACCESS_TOKEN"


def discovery_token(
    settings: Settings, token_env: str | None, env: Mapping[str, str] | None = None
) -> SecretStr:
    """The token to discover with: `token_env`'s value, else IG_ACCESS_TOKEN."""
    if token_env and token_env != DEFAULT_VARIABLE:
        value = read_variable(token_env, env)
    else:
        value = settings.access_token.get_secret_value() if settings.access_token else None
    value = (value or "").strip()
    if not value:
        raise SetupError(
            f"{token_env or 'IG_ACCESS_TOKEN'} is not set: export it or put it in .env"
        )
    register_secrets([value])
    return SecretStr(value)


async def discover_async(
    settings: Settings,
    token: SecretStr,
    *,
    login: Login = "facebook",
    token_env: str | None = None,
    transport: Transport | None = None,
) -> tuple[str, list[str]]:
    """(the accounts file, warnings): every account the token can read on its login's host."""
    async with clients_for(settings, [login], transport=transport) as hosts:
        client = hosts[login]
        if login == "instagram":
            found = await instagram_account(client, token)
        else:
            found = await facebook_accounts(client, token)
    text = accounts_toml(
        found.accounts,
        login=login,
        token_env=token_env if token_env != DEFAULT_VARIABLE else None,
        pages_without_instagram=found.pages_without_instagram,
    )
    warnings = list(found.skipped)
    if not found.accounts:
        warnings.append("the token can read no Instagram professional account")
    return text, warnings


def discover(
    settings: Settings,
    token: SecretStr,
    *,
    login: Login = "facebook",
    token_env: str | None = None,
    transport: Transport | None = None,
) -> tuple[str, list[str]]:
    return asyncio.run(
        discover_async(settings, token, login=login, token_env=token_env, transport=transport)
    )
