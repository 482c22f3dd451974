"""The simulator's tokens: what Meta knows about each (kind, accounts, expiry, scopes), and its
constants. Shared by `identity.py` (the guard, installing) and `identity_routes.py` (the routes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

INSTAGRAM_PREFIX = "/instagram"
# Instagram Login's demo token on the simulator's graph.instagram.com (reads any seed account).
DEFAULT_IG_TOKEN = "sim-ig-token"  # noqa: S105 - the simulator's well-known demo token
SIM_APP_ID = "1000000000000042"
SIM_USER_ID = "10200000000000001"
LONG_LIVED = timedelta(days=60)
DATA_ACCESS = timedelta(days=90)
IG_MIN_AGE = timedelta(hours=24)
FACEBOOK_ONLY_METRICS = frozenset({"link_clicks", "total_views"})
FACEBOOK_SCOPES = (
    "instagram_basic",
    "instagram_manage_insights",
    "pages_read_engagement",
    "pages_show_list",
    "public_profile",
)
INSTAGRAM_SCOPES = ("instagram_business_basic", "instagram_business_manage_insights")
_V = r"^/(?:v\d+\.\d+/)?"


@dataclass(frozen=True, slots=True)
class SimToken:
    """One token as Meta knows it. `kind`: USER, PAGE, SYSTEM_USER (Facebook) or INSTAGRAM."""

    kind: str
    accounts: frozenset[str] | None  # world account names it may read; None: all
    issued_at: datetime
    expires_at: datetime | None  # None: never
    data_access_expires_at: datetime | None
    scopes: tuple[str, ...]
    valid: bool = True

    @property
    def host(self) -> str:
        return "instagram" if self.kind == "INSTAGRAM" else "facebook"


@dataclass(frozen=True, slots=True)
class Caller:
    """The token a request came with, and what Meta knows about it."""

    token: str
    info: SimToken
