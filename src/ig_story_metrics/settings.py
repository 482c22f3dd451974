"""Settings: the environment (and a `.env` file) plus the accounts file, read once into frozen objects.

Nothing else in the package reads `os.environ` (ruff's banned-API rule enforces it); everything below
the entry points gets a `Settings`. Every problem a user can make here raises a `ConfigError` with a
one-line message naming it: `CallerError` when the request named a wrong account, `SetupError` when
the deployment is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ig_story_metrics.errors import CallerError, ConfigError, SetupError
from ig_story_metrics.model.accounts import (
    IG_USER_ID,
    LOGINS,
    SECRET_NAME,
    Account,
    account_name_problem,
)
from ig_story_metrics.redact import register_secrets

__all__ = ["Account", "CallerError", "ConfigError", "Settings", "SetupError"]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Settings(BaseSettings):
    """The process-wide settings (see the table in DESIGN.md)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    access_token: SecretStr | None = Field(default=None, validation_alias="IG_ACCESS_TOKEN")
    accounts_file: Path = Field(default=Path("accounts.toml"), validation_alias="IG_ACCOUNTS_FILE")
    graph_api_url: str = Field(
        default="https://graph.facebook.com", validation_alias="IG_GRAPH_API_URL"
    )
    graph_api_version: str = Field(
        default="v25.0", pattern=r"^v\d+\.\d+$", validation_alias="IG_GRAPH_API_VERSION"
    )
    # Accounts with `login = "instagram"` are read from this host (Instagram Login).
    instagram_api_url: str = Field(
        default="https://graph.instagram.com", validation_alias="IG_INSTAGRAM_API_URL"
    )
    # The Meta app: appsecret_proof on every call, debug_token's app token, token renewal.
    app_id: str | None = Field(default=None, pattern=r"^[0-9]{1,32}$", validation_alias="IG_APP_ID")
    app_secret: SecretStr | None = Field(default=None, validation_alias="IG_APP_SECRET")
    storage_url: str = Field(default="./data", validation_alias="STORAGE_URL")
    max_concurrent_accounts: int = Field(
        default=5, ge=1, le=50, validation_alias="IG_MAX_CONCURRENT_ACCOUNTS"
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="IG_REQUEST_TIMEOUT_SECONDS"
    )
    # Retries and throttling (graph/throttle.py): a Cloud Function has a deadline, so every wait
    # and retry of a run fits in one time budget.
    run_budget_seconds: float = Field(default=480.0, gt=0, validation_alias="IG_RUN_BUDGET_SECONDS")
    max_attempts: int = Field(default=5, ge=1, le=20, validation_alias="IG_MAX_ATTEMPTS")
    backoff_base_seconds: float = Field(
        default=1.0, gt=0, validation_alias="IG_BACKOFF_BASE_SECONDS"
    )
    backoff_max_seconds: float = Field(
        default=60.0, gt=0, validation_alias="IG_BACKOFF_MAX_SECONDS"
    )
    usage_pause_percent: float = Field(
        default=80.0, gt=0, le=100, validation_alias="IG_USAGE_PAUSE_PERCENT"
    )
    # The platform's and the Google libraries' own variables, read here like every other setting.
    storage_emulator_host: str | None = Field(
        default=None, validation_alias="STORAGE_EMULATOR_HOST"
    )
    google_cloud_project: str | None = Field(default=None, validation_alias="GOOGLE_CLOUD_PROJECT")
    # Secret Manager's address for tests (a fake of its REST API); unset: the real service.
    secret_manager_emulator_host: str | None = Field(
        default=None, validation_alias="SECRET_MANAGER_EMULATOR_HOST"
    )
    k_service: str | None = Field(default=None, validation_alias="K_SERVICE")


def log_format() -> str | None:
    """The `LOG_FORMAT` setting, read before anything else so that even a refused start logs in
    the chosen format (an unknown value is reported by `logs.configure`)."""
    return os.environ.get("LOG_FORMAT")


def load_settings(
    env: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> Settings:
    """Read the settings from `env` (default: the process environment and `.env`).

    With an explicit `env`, no `.env` file is read unless `env_file` names one: tests stay hermetic.
    """
    try:
        if env is None:
            settings = Settings(_env_file=env_file or Path(".env"))  # type: ignore[call-arg]
        else:
            known: dict[str, Any] = {k: v for k, v in env.items() if k in _ALIASES}
            settings = Settings(_env_file=env_file, **known)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SetupError(_describe(exc)) from None
    # The app secret is masked in every text that leaves the process, from the moment it is known.
    if settings.app_secret is not None:
        register_secrets([settings.app_secret.get_secret_value()])
    return settings


_ALIASES = {
    str(f.validation_alias)
    for f in Settings.model_fields.values()
    if f.validation_alias is not None
}


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"]) or "settings"
    return f"invalid setting {name}: {first['msg']}"


def load_accounts(path: Path) -> dict[str, Account]:
    """Parse the accounts file: `[accounts.NAME] ig_user_id = "..."`, optional `token_env`."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError(
            f"accounts file {path} not found (set IG_ACCOUNTS_FILE, or copy accounts.example.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"accounts file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SetupError(f"accounts file {path} is not valid TOML: {exc}") from None
    table = raw.get("accounts")
    if not isinstance(table, dict) or not table:
        raise SetupError(f"accounts file {path} has no [accounts.NAME] tables")
    return {name: _account(path, name, entry) for name, entry in table.items()}


def _account(path: Path, name: str, entry: object) -> Account:
    where = f"accounts file {path}: account {name!r}"
    problem = account_name_problem(name)
    if problem:
        raise SetupError(f"{where}: {problem}")
    if not isinstance(entry, dict):
        raise SetupError(f"{where} must be a table with ig_user_id")
    unknown = set(entry) - {"ig_user_id", "token_env", "login", "token_secret"}
    if unknown:
        raise SetupError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    ig_user_id = entry.get("ig_user_id")
    if not isinstance(ig_user_id, str) or not IG_USER_ID.fullmatch(ig_user_id):
        raise SetupError(f"{where}: ig_user_id must be a string of digits")
    token_env = entry.get("token_env")
    if token_env is not None and (not isinstance(token_env, str) or not ENV_NAME.match(token_env)):
        raise SetupError(f"{where}: token_env must be an environment variable name")
    login = entry.get("login", "facebook")
    if login not in LOGINS:
        raise SetupError(f"{where}: login must be one of {', '.join(map(repr, LOGINS))}")
    token_secret = entry.get("token_secret")
    if token_secret is not None and (
        not isinstance(token_secret, str) or not SECRET_NAME.fullmatch(token_secret)
    ):
        raise SetupError(
            f"{where}: token_secret must be a Secret Manager secret id or projects/P/secrets/S"
        )
    return Account(
        name=name,
        ig_user_id=ig_user_id,
        token_env=token_env,
        login=login,
        token_secret=token_secret,
    )


def select_accounts(
    known: Mapping[str, Account], names: Iterable[str], *, all_accounts: bool
) -> list[Account]:
    """The accounts a run asked for, in the order given; unknown or malformed names are errors."""
    wanted = list(names)
    if all_accounts and wanted:
        raise CallerError("name accounts or pass --all, not both")
    if all_accounts:
        return list(known.values())
    if not wanted:
        raise CallerError("no account given: name one or more accounts, or pass --all")
    for name in wanted:
        problem = account_name_problem(name)
        if problem:
            raise CallerError(f"invalid account name {name!r}: {problem}")
        if name not in known:
            raise CallerError(f"unknown account {name!r} (known: {', '.join(known)})")
    return [known[name] for name in dict.fromkeys(wanted)]


def resolve_tokens(
    settings: Settings, accounts: Iterable[Account], env: Mapping[str, str] | None = None
) -> dict[str, SecretStr]:
    """Each account's token: its own `token_env` variable, else `IG_ACCESS_TOKEN`."""
    environ = os.environ if env is None else env
    tokens: dict[str, SecretStr] = {}
    for account in accounts:
        if account.token_env:
            value = environ.get(account.token_env, "").strip()
            if not value:
                raise SetupError(
                    f"account {account.name} takes its token from {account.token_env}, "
                    "which is not set"
                )
            tokens[account.name] = SecretStr(value)
        elif settings.access_token is not None and settings.access_token.get_secret_value().strip():
            tokens[account.name] = SecretStr(settings.access_token.get_secret_value().strip())
        else:
            raise SetupError(
                f"IG_ACCESS_TOKEN is not set (needed for account {account.name}); "
                "export it or put it in .env"
            )
    return tokens


def read_variable(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A variable the accounts file names: the environment, else the `.env` file (with an explicit
    `env`, only that mapping)."""
    if env is not None:
        return env.get(name)
    value = os.environ.get(name)
    if value is None and Path(".env").is_file():
        try:
            value = dotenv_values(".env", encoding="utf-8").get(name)
        except UnicodeDecodeError:
            raise SetupError(".env is not valid UTF-8") from None
    return value


def lookup_token(
    settings: Settings, account: Account, env: Mapping[str, str] | None = None
) -> SecretStr | None:
    """The account's token (its `token_env` variable, else `IG_ACCESS_TOKEN`), or None when unset."""
    if account.token_env:
        value = read_variable(account.token_env, env)
    elif settings.access_token is not None:
        value = settings.access_token.get_secret_value()
    else:
        value = None
    value = (value or "").strip()
    return SecretStr(value) if value else None


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs, validated: settings, the chosen accounts and their tokens."""

    settings: Settings
    accounts: list[Account]
    tokens: dict[str, SecretStr]


def prepare_run(
    names: Iterable[str], *, all_accounts: bool, env: Mapping[str, str] | None = None
) -> RunConfig:
    """Settings, accounts file, account selection and tokens, or a `ConfigError` naming the problem.

    The one path shared by the CLI and the Cloud Function.
    """
    settings = load_settings(env)
    accounts = select_accounts(
        load_accounts(settings.accounts_file), names, all_accounts=all_accounts
    )
    return RunConfig(settings, accounts, resolve_tokens(settings, accounts, env))
