"""Accounts: the one account-name check, and the account as the accounts file describes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
IG_USER_ID = re.compile(r"[0-9]{1,32}")
Login = Literal["facebook", "instagram"]
LOGINS: tuple[Login, ...] = ("facebook", "instagram")
# A Secret Manager secret: its id, or its full resource name `projects/P/secrets/S`.
SECRET_NAME = re.compile(r"(projects/[A-Za-z0-9_.:-]{1,100}/secrets/)?[A-Za-z0-9_-]{1,255}")


def account_name_problem(name: object) -> str | None:
    """Why `name` cannot be an account name (it becomes a path component), or None when it can."""
    if not isinstance(name, str):
        return f"account names are strings, not {type(name).__name__}"
    if not name:
        return "an account name cannot be empty"
    if len(name) > 64:
        return "an account name has at most 64 characters"
    if not ACCOUNT_NAME.fullmatch(name):
        return "account names may only use letters, digits, '_' and '-'"
    return None


def is_account_name(name: object) -> bool:
    return account_name_problem(name) is None


@dataclass(frozen=True, slots=True)
class Account:
    """One Instagram professional account to poll."""

    name: str
    ig_user_id: str
    token_env: str | None = None
    login: Login = "facebook"
    # The Secret Manager secret that holds this account's token (`tokens refresh` adds versions).
    token_secret: str | None = None

    def __post_init__(self) -> None:
        problem = account_name_problem(self.name)
        if problem:
            raise ValueError(f"account {self.name!r}: {problem}")
        if not IG_USER_ID.fullmatch(self.ig_user_id):
            raise ValueError(f"account {self.name}: ig_user_id must be a string of digits")

    @property
    def token_variable(self) -> str:
        """The variable this account's token comes from."""
        return self.token_env or "IG_ACCESS_TOKEN"


def missing_token(account: Account) -> str:
    """Why an account without a token cannot run, and what to set."""
    return (
        f"no token for account {account.name}: set {account.token_variable} "
        "(in the environment or in .env)"
    )
