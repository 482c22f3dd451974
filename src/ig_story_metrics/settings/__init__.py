"""Settings: the environment (and a `.env` file) plus the accounts file, read once into frozen objects.

Nothing else in the package reads `os.environ` (ruff's banned-API rule enforces it); everything below
the entry points gets a `Settings`. `.env` is read once per run and serves every variable the
settings name, the accounts' own `token_env` variables included; the environment wins over it.
Every problem a user can make here raises a `ConfigError` with a one-line message naming it:
`CallerError` when the request named a wrong account, `SetupError` when the deployment is wrong.
A token that is missing is not such a problem: that account fails in the run, the others run.

The package: `values.py` (the `Settings` object and its checks), `environment.py` (the environment
and `.env`, read once), `accounts.py` (the accounts file), `tokens.py` (each account's token),
`run.py` (`prepare_run`, the one path of the CLI and the Cloud Function).
"""

from ig_story_metrics.errors import CallerError, ConfigError, SetupError
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.settings.accounts import load_accounts, select_accounts
from ig_story_metrics.settings.environment import (
    environment,
    load_settings,
    log_format,
    read_dotenv,
)
from ig_story_metrics.settings.run import RunConfig, prepare_run
from ig_story_metrics.settings.tokens import (
    lookup_token,
    read_variable,
    resolve_tokens,
    token_problem,
)
from ig_story_metrics.settings.values import (
    ENV_NAME,
    Settings,
    http_url_problem,
    local_folder_problem,
)

__all__ = [
    "ENV_NAME",
    "Account",
    "CallerError",
    "ConfigError",
    "RunConfig",
    "Settings",
    "SetupError",
    "environment",
    "http_url_problem",
    "load_accounts",
    "load_settings",
    "local_folder_problem",
    "log_format",
    "lookup_token",
    "prepare_run",
    "read_dotenv",
    "read_variable",
    "resolve_tokens",
    "select_accounts",
    "token_problem",
]
