"""Settings: the environment (and a `.env` file) plus the accounts file, read once into frozen objects.

Nothing else in the package reads `os.environ` (ruff's banned-API rule enforces it); everything below
the entry points gets a `Settings`. `.env` is read once per run and serves every variable the
settings name, the accounts' own `token_env` variables included; the environment wins over it.
Every problem a user can make here raises a `ConfigError` with a one-line message naming it:
`CallerError` when the request named a wrong account, `SetupError` when the deployment is wrong.
A token that is missing is not such a problem: that account fails in the run, the others run.
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ig_story_metrics.errors import CallerError, ConfigError, SetupError
from ig_story_metrics.model.accounts import IG_USER_ID, Account, account_name_problem
from ig_story_metrics.model.location import (
    DEFAULT_STORAGE_URL,
    StorageLocation,
    parse_storage_url,
)
from ig_story_metrics.model.metrics import EXTRA_METRICS

__all__ = ["Account", "CallerError", "ConfigError", "Settings", "SetupError"]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DOTENV = Path(".env")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class Settings(BaseSettings):
    """The process-wide settings (see the table in DESIGN.md)."""

    # `.env` is read by `environment()`, once, for the settings and the tokens alike.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

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
    # Opt-in metrics asked with the plain ones: a comma list of names from EXTRA_METRICS.
    extra_metrics: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="IG_EXTRA_METRICS"
    )

    @field_validator("extra_metrics", mode="before")
    @classmethod
    def _metric_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
        unknown = [n for n in names if n not in EXTRA_METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(EXTRA_METRICS)}"
            )
        return names

    # The sweep (jobs/sweep.py) snapshots the stories expiring within this many minutes; with a
    # sweep every 10 minutes, 12 leaves 2 minutes for a late start.
    sweep_window_minutes: float = Field(
        default=12.0, gt=0, le=120, validation_alias="IG_SWEEP_WINDOW_MINUTES"
    )
    # The platform's and the Google libraries' own variables, read here like every other setting.
    storage_emulator_host: str | None = Field(
        default=None, validation_alias="STORAGE_EMULATOR_HOST"
    )
    google_cloud_project: str | None = Field(default=None, validation_alias="GOOGLE_CLOUD_PROJECT")
    k_service: str | None = Field(default=None, validation_alias="K_SERVICE")

    @field_validator("graph_api_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        problem = http_url_problem(url)
        if problem:
            raise ValueError(problem)
        return url

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


def http_url_problem(url: str) -> str | None:
    """Why `url` is not an http(s) base URL with a valid host and port, or None when it is."""
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        return "must be an http(s) URL without spaces, line breaks or non-ASCII characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or a fragment"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port (1 to 65535)"
    if port == 0:
        return "has an invalid port (1 to 65535)"
    if not _valid_host(parts.hostname or ""):
        return "has no valid host name or IP address"
    return None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        return 0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
    return True


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


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables a `.env` file sets ({} when there is none); SetupError when it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SetupError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SetupError(
            f"{path} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}): "
            "save it as UTF-8"
        ) from None
    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


def environment(
    env: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> dict[str, str]:
    """The variables a run sees: `env`, or the process environment over `.env` (read once here).

    With an explicit `env`, no `.env` file is read unless `env_file` names one: tests stay hermetic.
    """
    if env is None:
        return {**read_dotenv(env_file or DOTENV), **os.environ}
    return {**(read_dotenv(env_file) if env_file else {}), **env}


def load_settings(
    env: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> Settings:
    """Read the settings from `env` (default: the process environment and `.env`)."""
    known: dict[str, Any] = {
        k: v for k, v in environment(env, env_file=env_file).items() if k in _ALIASES
    }
    try:
        return Settings(**known)
    except ValidationError as exc:
        raise SetupError(_describe(exc)) from None


_ALIASES = {
    str(f.validation_alias)
    for f in Settings.model_fields.values()
    if f.validation_alias is not None
}


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"])
    if first["type"] == "value_error":  # our own checks: said as they are, named by the setting
        message = str(first["ctx"]["error"])
        return message if not name or name in message else f"invalid setting {name}: {message}"
    return f"invalid setting {name or 'settings'}: {first['msg']}"


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
    accounts = {name: _account(path, name, entry) for name, entry in table.items()}
    seen: dict[str, str] = {}
    for account in accounts.values():
        other = seen.setdefault(account.ig_user_id, account.name)
        if other != account.name:
            raise SetupError(
                f"accounts file {path}: accounts {other} and {account.name} have the same "
                f"ig_user_id {account.ig_user_id} (each account is captured once: keep one)"
            )
    return accounts


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

    The one path shared by the CLI and the Cloud Function; `.env` is read once, here.
    """
    environ = environment(env)
    settings = load_settings(environ)
    accounts = select_accounts(
        load_accounts(settings.accounts_file), names, all_accounts=all_accounts
    )
    return RunConfig(settings, accounts, resolve_tokens(settings, accounts, environ))
