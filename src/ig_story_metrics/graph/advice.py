"""What to tell a person whose account the Graph API refuses to serve."""

from __future__ import annotations

import re

from ig_story_metrics.graph.errors import GraphError
from ig_story_metrics.model.accounts import Account

_EXPIRED_ON = re.compile(r"expired on ([^.]+)", re.IGNORECASE)
PERMISSIONS = "instagram_basic, instagram_manage_insights, pages_read_engagement, pages_show_list"


def account_advice(account: Account, error: GraphError) -> str:
    """A one-line, actionable message for an account the API refuses to serve."""
    what = error.describe()
    variable = account.token_env or "IG_ACCESS_TOKEN"
    if error.code in (190, 102):
        when = _EXPIRED_ON.search(error.message)
        if error.subcode == 463 or when:
            on = f" on {when.group(1).strip()}" if when else ""
            return (
                f"token for {account.name} expired{on}: create a new long-lived token and update "
                f"{variable} ({what})"
            )
        return (
            f"token for {account.name} is invalid or revoked: log in again and create a new "
            f"long-lived token for {variable} ({what})"
        )
    if error.code == 100:
        return (
            f"account {account.name}: ig_user_id {account.ig_user_id} does not exist or this "
            f"token cannot see it: check the accounts file ({what})"
        )
    return (
        f"token for {account.name} lacks a permission: grant {PERMISSIONS} to the app and "
        f"create a new token ({what})"
    )
