"""What to tell a person whose account the Graph API refuses to serve.

Every message names what to fix: the variable the token comes from and, when the accounts file
names one, the Secret Manager secret that holds it.
"""

from __future__ import annotations

import re

from ig_story_metrics.graph.errors import GraphError
from ig_story_metrics.model.accounts import Account

_EXPIRED_ON = re.compile(r"expired on ([^.]+)", re.IGNORECASE)
PERMISSIONS = "instagram_basic, instagram_manage_insights, pages_read_engagement, pages_show_list"
INSTAGRAM_PERMISSIONS = "instagram_business_basic, instagram_business_manage_insights"


def token_home(account: Account) -> str:
    """Where the account's token lives: its variable, and its secret when one is named."""
    home = account.token_variable
    if account.token_secret:
        home += f" (secret {account.token_secret})"
    return home


def wrong_kind(account: Account) -> str:
    """The likely mix-up when a host cannot even parse the token (190 "Cannot parse")."""
    if account.login == "instagram":
        return (
            f"account {account.name} uses Instagram Login (graph.instagram.com), which cannot parse "
            f"the token in {token_home(account)}: is it a Facebook token (EAA...)? Put an Instagram "
            'User token (IGAA...) there, or remove login = "instagram" from the account'
        )
    return (
        f"account {account.name} uses Facebook Login (graph.facebook.com), which cannot parse the "
        f"token in {token_home(account)}: is it an Instagram Login token (IGAA...)? Then add "
        'login = "instagram" to the account, or put a Facebook token there'
    )


def account_advice(account: Account, error: GraphError) -> str:
    """A one-line, actionable message for an account the API refuses to serve."""
    what = error.describe()
    home = token_home(account)
    if error.code in (190, 102):
        if "cannot parse access token" in error.message.lower():
            return f"{wrong_kind(account)} ({what})"
        when = _EXPIRED_ON.search(error.message)
        if error.subcode == 463 or when:
            on = f" on {when.group(1).strip()}" if when else ""
            renew = (
                f"run `ig-story-metrics tokens refresh {account.name}` or "
                if account.token_secret
                else ""
            )
            return (
                f"token for {account.name} expired{on}: {renew}create a new long-lived token and "
                f"update {home} ({what})"
            )
        return (
            f"token for {account.name} is invalid or revoked: log in again and create a new "
            f"long-lived token for {home} ({what})"
        )
    if error.code == 100:
        return (
            f"account {account.name}: ig_user_id {account.ig_user_id} does not exist or this "
            f"token cannot see it: check the accounts file ({what})"
        )
    needed = INSTAGRAM_PERMISSIONS if account.login == "instagram" else PERMISSIONS
    return (
        f"token for {account.name} lacks a permission: grant {needed} to the app and "
        f"create a new token for {home} ({what})"
    )


def missing_token_advice(account: Account) -> str:
    """The message for an account whose token variable is not set."""
    where = f"export {account.token_variable} or put it in .env"
    if account.token_secret:
        where += f" (deployed: map it from secret {account.token_secret})"
    return f"account {account.name} takes its token from {account.token_variable}, which is not set: {where}"
