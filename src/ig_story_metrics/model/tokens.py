"""Token health as data: what Meta says about a token, and what follows from it (no I/O).

    TokenFacts          what debug_token (Facebook Login) or a /me probe (Instagram Login) said
    problems()          why a token will stop the capture soon: invalid, a permission missing,
                        an expiry (of the token or of its data access) within FAIL_WITHIN
    alert_threshold()   the day counts (14, 7, 1) on which the daily check logs `token_expiring`
    may_refresh()       whether Meta lets us renew this token ourselves

Times are aware UTC datetimes. `expires_at` None with `never_expires` False means "unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ig_story_metrics.model.accounts import Login

REQUIRED_SCOPES: Final[dict[Login, tuple[str, ...]]] = {
    "facebook": ("instagram_basic", "instagram_manage_insights", "pages_read_engagement"),
    "instagram": ("instagram_business_basic", "instagram_business_manage_insights"),
}
FAIL_WITHIN: Final = timedelta(days=7)  # `tokens check` exits 1 from here on
REFRESH_WITHIN: Final = timedelta(days=10)  # the daily run renews what it may from here on
ALERT_DAYS: Final = (14, 7, 1)  # the daily run logs a WARNING `token_expiring` on these days
# Instagram Login tokens: 60 days from their creation or their last refresh (graph-api.md §6.2).
INSTAGRAM_LIFETIME: Final = timedelta(days=60)
INSTAGRAM_MIN_AGE: Final = timedelta(hours=24)  # younger tokens cannot be refreshed yet
# debug_token's `type` values whose expiring tokens Meta lets us renew with fb_exchange_token.
RENEWABLE_TYPES: Final = frozenset({"USER", "SYSTEM_USER"})


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What Meta said about one token (never the token itself)."""

    valid: bool
    kind: str = "unknown"  # debug_token's type (USER, PAGE, SYSTEM_USER), or INSTAGRAM
    never_expires: bool = False
    expires_at: datetime | None = None  # None and not never_expires: unknown
    expiry_estimated: bool = False  # Instagram: from when the secret's version was stored
    data_access_expires_at: datetime | None = None
    scopes: frozenset[str] | None = None  # None: Meta does not tell (Instagram Login)
    error: str | None = None  # why the token is not valid, as Meta put it
    owner: str | None = None  # whom the token speaks for (user id, or @username)


def missing_scopes(facts: TokenFacts, login: Login) -> list[str]:
    """The required permissions the token lacks (none known when Meta does not list them)."""
    if facts.scopes is None:
        return []
    return [s for s in REQUIRED_SCOPES[login] if s not in facts.scopes]


def deadlines(facts: TokenFacts) -> list[tuple[str, datetime]]:
    """The known dates on which the token stops working: ("token" | "data access", when)."""
    found = []
    if not facts.never_expires and facts.expires_at is not None:
        found.append(("token", facts.expires_at))
    if facts.data_access_expires_at is not None:
        found.append(("data access", facts.data_access_expires_at))
    return found


def days_left(when: datetime, now: datetime) -> float:
    return (when - now).total_seconds() / 86400


def problems(facts: TokenFacts, login: Login, now: datetime) -> list[str]:
    """Why this token fails the check: invalid, a missing permission, an expiry within 7 days."""
    if not facts.valid:
        return [f"invalid: {facts.error or 'Meta refuses it'}"]
    found = []
    missing = missing_scopes(facts, login)
    if missing:
        found.append("missing permission(s): " + ", ".join(missing))
    for what, when in deadlines(facts):
        if when - now <= FAIL_WITHIN:
            found.append(f"{what} {expiry_phrase(when, now)}")
    return found


def expiry_phrase(when: datetime, now: datetime) -> str:
    left = days_left(when, now)
    if left <= 0:
        return f"expired on {when:%Y-%m-%d %H:%M} UTC"
    return f"expires on {when:%Y-%m-%d %H:%M} UTC (in {left:.1f} days)"


def alert_threshold(when: datetime, now: datetime) -> int | None:
    """14, 7 or 1 when a daily check at `now` is the one to warn that `when` is near, else None.

    Whole days left (rounded down) of 14 or 7 warn once each; from 1 day left (and after expiry)
    every check warns.
    """
    whole = math.floor(days_left(when, now))
    if whole <= ALERT_DAYS[-1]:
        return ALERT_DAYS[-1]
    return whole if whole in ALERT_DAYS else None


def may_refresh(facts: TokenFacts, login: Login) -> bool:
    """Whether Meta lets us renew this token: Instagram Login tokens, and expiring Facebook user
    or system-user tokens. Page tokens and tokens that never expire: nothing to renew."""
    if not facts.valid or facts.never_expires:
        return False
    if login == "instagram":
        return True
    return facts.kind in RENEWABLE_TYPES


def due_for_refresh(facts: TokenFacts, login: Login, now: datetime) -> bool:
    """The daily run renews a token it may renew once it expires within REFRESH_WITHIN."""
    if not may_refresh(facts, login) or facts.expires_at is None:
        return False
    return facts.expires_at - now <= REFRESH_WITHIN


def display_expiry(facts: TokenFacts) -> str:
    """`never`, `unknown`, or the date (`~` marks an estimate)."""
    if facts.never_expires:
        return "never"
    if facts.expires_at is None:
        return "unknown"
    return ("~" if facts.expiry_estimated else "") + f"{facts.expires_at:%Y-%m-%d %H:%M} UTC"
