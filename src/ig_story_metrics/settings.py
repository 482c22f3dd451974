"""Settings: the environment (and a `.env` file) plus the accounts file, read once into frozen objects.

Nothing else in the package reads `os.environ` (ruff's banned-API rule enforces it); everything below
the entry points gets a `Settings`. Every problem a user can make here raises a `ConfigError` with a
one-line message naming it: `CallerError` when the request named a wrong account, `SetupError` when
the deployment is wrong.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ig_story_metrics.errors import CallerError, ConfigError, SetupError
from ig_story_metrics.model.accounts import IG_USER_ID, Account, account_name_problem
from ig_story_metrics.model.location import (
    DEFAULT_STORAGE_URL,
    StorageLocation,
    parse_storage_url,
)

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
    # Checked strictly at start (model/location.py): a typo must not send the lake elsewhere.
    storage_url: str = Field(default=DEFAULT_STORAGE_URL, validation_alias="STORAGE_URL")
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
    k_service: str | None = Field(default=None, validation_alias="K_SERVICE")

    @field_validator("storage_url")
    @classmethod
    def _storage_url_parses(cls, value: str) -> str:
        return parse_storage_url(value).url  # a ValueError names the value and the forms

    @model_validator(mode="after")
    def _storage_is_usable_here(self) -> Settings:
        location = self.storage
        if location.is_local and self.k_service:
            raise ValueError(
                f"STORAGE_URL {self.storage_url!r} is a local folder, but this runs on Cloud "
                f"Functions / Cloud Run (K_SERVICE={self.k_service}), whose disk is lost after "
                "the run: set STORAGE_URL=gs://BUCKET[/PREFIX]"
            )
        if location.is_local:
            problem = local_folder_problem(Path(location.path).expanduser())
            if problem:
                raise ValueError(f"STORAGE_URL {self.storage_url!r} {problem}")
        return self

    @property
    def storage(self) -> StorageLocation:
        """Where the lake lives (`storage_url`, already validated)."""
        return parse_storage_url(self.storage_url)


def local_folder_problem(path: Path) -> str | None:
    """Why `path` cannot be the lake's folder (a file, a device, ...), or None: a folder, or
    nothing yet (created on the first write)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return f"cannot be a folder: a part of {path} is a file"
    except OSError as exc:
        return f"cannot be checked: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return f"is a file, not a folder ({path})"
    return f"is a device or special file, not a folder ({path})"


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
            return Settings(_env_file=env_file or Path(".env"))  # type: ignore[call-arg]
        known: dict[str, Any] = {k: v for k, v in env.items() if k in _ALIASES}
        return Settings(_env_file=env_file, **known)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SetupError(_describe(exc)) from None


_ALIASES = {
    str(f.validation_alias)
    for f in Settings.model_fields.values()
    if f.validation_alias is not None
}


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    if first["type"] == "value_error":  # our own checks: the message names the setting
        return str(first["ctx"]["error"])
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
    unknown = set(entry) - {"ig_user_id", "token_env"}
    if unknown:
        raise SetupError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    ig_user_id = entry.get("ig_user_id")
    if not isinstance(ig_user_id, str) or not IG_USER_ID.fullmatch(ig_user_id):
        raise SetupError(f"{where}: ig_user_id must be a string of digits")
    token_env = entry.get("token_env")
    if token_env is not None and (not isinstance(token_env, str) or not ENV_NAME.match(token_env)):
        raise SetupError(f"{where}: token_env must be an environment variable name")
    return Account(name=name, ig_user_id=ig_user_id, token_env=token_env)


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
