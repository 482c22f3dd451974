"""Accounts found by `accounts discover`, named and written as an accounts file (no I/O).

Names come from the Instagram usernames: upper-cased, every run of characters outside
`[A-Za-z0-9_-]` turned into `_`, at most 64 characters; a name taken twice gets `_2`, `_3`, ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ig_story_metrics.model.accounts import ACCOUNT_NAME, Login

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class Found:
    """One Instagram professional account a token can read."""

    ig_user_id: str
    username: str | None = None
    page: str | None = None  # the Facebook Page it is linked to (Facebook Login)


def base_name(found: Found) -> str:
    """The account name a username suggests (`IG_<id>` when there is no usable username)."""
    name = _UNSAFE.sub("_", found.username or "").strip("_").upper()[:MAX_NAME]
    return name if ACCOUNT_NAME.fullmatch(name) else f"IG_{found.ig_user_id}"[:MAX_NAME]


def unique_names(accounts: Sequence[Found], taken: Iterable[str] = ()) -> list[str]:
    """One distinct, path-safe name per account, in order (case-insensitive: folders on some file
    systems are)."""
    used = {t.upper() for t in taken}
    names = []
    for found in accounts:
        base = base_name(found)
        name, n = base, 1
        while name.upper() in used:
            n += 1
            suffix = f"_{n}"
            name = base[: MAX_NAME - len(suffix)] + suffix
        used.add(name.upper())
        names.append(name)
    return names


def _comment(text: str) -> str:
    """Text made safe for one TOML comment line."""
    return _CONTROL.sub(" ", text).strip()


def accounts_toml(
    accounts: Sequence[Found],
    *,
    login: Login,
    token_env: str | None = None,
    pages_without_instagram: Sequence[str] = (),
) -> str:
    """The accounts file for `accounts`, with a comment per account saying where it came from."""
    source = token_env or "IG_ACCESS_TOKEN"
    lines = [
        f"# Accounts the token in {source} can read ({login.capitalize()} Login),",
        "# printed by `ig-story-metrics accounts discover`: save as accounts.toml (IG_ACCOUNTS_FILE).",
        "",
    ]
    unique = list({f.ig_user_id: f for f in accounts}.values())
    for name, found in zip(unique_names(unique), unique, strict=True):
        origin = [f"@{found.username}" if found.username else "no username"]
        if found.page:
            origin.append(f"Page {found.page}")
        lines += [f"# {_comment(', '.join(origin))}", f"[accounts.{name}]"]
        lines.append(f'ig_user_id = "{found.ig_user_id}"')
        if login != "facebook":
            lines.append(f'login = "{login}"')
        if token_env:
            lines.append(f'token_env = "{token_env}"')
        lines.append("")
    for page in pages_without_instagram:
        lines.append(f"# Page {_comment(page)} has no Instagram professional account linked")
    return "\n".join(lines).rstrip("\n") + "\n"
