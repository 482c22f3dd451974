"""The accounts file (`[accounts.NAME]` tables) and the choice of accounts a run asks for."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from ig_story_metrics.errors import CallerError, SetupError
from ig_story_metrics.model.accounts import (
    IG_USER_ID,
    LOGINS,
    SECRET_NAME,
    Account,
    account_name_problem,
)
from ig_story_metrics.settings.values import ENV_NAME


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
