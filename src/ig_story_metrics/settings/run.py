"""Everything a run needs, validated in one call shared by the CLI and the Cloud Function."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from ig_story_metrics.errors import CallerError
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.shards import Shard
from ig_story_metrics.settings.accounts import load_accounts, select_accounts
from ig_story_metrics.settings.environment import environment, load_settings
from ig_story_metrics.settings.tokens import resolve_tokens
from ig_story_metrics.settings.values import Settings


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs, validated: settings, the chosen accounts and their tokens."""

    settings: Settings
    accounts: list[Account]
    tokens: dict[str, SecretStr]


def prepare_run(
    names: Iterable[str],
    *,
    all_accounts: bool,
    env: Mapping[str, str] | None = None,
    shard: Shard | None = None,
) -> RunConfig:
    """Settings, accounts file, account selection and tokens, or a `ConfigError` naming the problem.

    The one path shared by the CLI and the Cloud Function; `.env` is read once, here. With --all,
    only the accounts of `shard` (default: the Cloud Run Jobs task's, when there is one) run.
    """
    environ = environment(env)
    settings = load_settings(environ)
    accounts = select_accounts(
        load_accounts(settings.accounts_file), names, all_accounts=all_accounts
    )
    if shard is not None and not all_accounts:
        raise CallerError("--shard goes with --all (it picks a share of every account)")
    shard = shard or (settings.task_shard if all_accounts else None)
    if shard is not None:
        accounts = [a for a in accounts if shard.holds(a.name)]
    return RunConfig(settings, accounts, resolve_tokens(settings, accounts, environ))
