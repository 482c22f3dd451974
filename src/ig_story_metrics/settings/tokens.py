"""Each account's token: its own `token_env` variable, else `IG_ACCESS_TOKEN`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import SecretStr

from ig_story_metrics.errors import SetupError
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.settings.environment import environment
from ig_story_metrics.settings.values import Settings


def resolve_tokens(
    settings: Settings, accounts: Iterable[Account], env: Mapping[str, str] | None = None
) -> dict[str, SecretStr]:
    """Each account's token: its own `token_env` variable, else `IG_ACCESS_TOKEN`.

    `env` defaults to the process environment over `.env`. An account whose token is not set is
    left out (the run fails that account, naming the variable); a token that is set but malformed
    is a `SetupError` naming its variable, never showing the token.
    """
    environ = environment() if env is None else env
    default = settings.access_token.get_secret_value() if settings.access_token else ""
    tokens: dict[str, SecretStr] = {}
    for account in accounts:
        raw = environ.get(account.token_env, "") if account.token_env else default
        token = raw.strip()
        if not token:
            continue
        problem = token_problem(token)
        if problem:
            raise SetupError(
                f"{account.token_variable} (the token of account {account.name}) {problem}: "
                "copy the token again"
            )
        tokens[account.name] = SecretStr(token)
    return tokens


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a Graph API token (which is printable ASCII), or None."""
    if not token.isascii():
        return "holds a non-ASCII character"
    if "\n" in token or "\r" in token:
        return "holds a line break"
    if any(c.isspace() or not c.isprintable() for c in token):
        return "holds whitespace or a control character"
    if '"' in token or "\\" in token:
        return "holds a quote or a backslash"
    return None


def read_variable(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A variable the accounts file names: the environment over `.env` (with an explicit `env`,
    only that mapping)."""
    return environment(env).get(name)


def lookup_token(
    settings: Settings, account: Account, env: Mapping[str, str] | None = None
) -> SecretStr | None:
    """The account's token (its `token_env` variable, else `IG_ACCESS_TOKEN`), or None when unset;
    a malformed one is a `SetupError` naming its variable."""
    return resolve_tokens(settings, [account], env).get(account.name)
