"""The metrics catalogue: what a story's insights calls ask for, and the columns they fill."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

# Plain metrics, asked in one call. `reposts` exists since Dec 2025 on every version; `link_clicks`
# (taps on links in the story, such as link stickers) since Jun 2026, with Facebook Login only.
PLAIN_METRICS: tuple[str, ...] = (
    "views",
    "reach",
    "replies",
    "shares",
    "total_interactions",
    "follows",
    "profile_visits",
    "reposts",
    "link_clicks",
)
# Opt-in metrics (`IG_EXTRA_METRICS`), asked with the plain ones. Meta answers #100 for a story
# where one does not apply (`facebook_views` of a story not shared to Facebook): that story's
# column stays null, and an account whose whole batch refuses one stops asking for it.
EXTRA_METRICS: tuple[str, ...] = ("total_views", "facebook_views")
# Breakdown metrics need a call each: breakdown dimension -> {API value (lower case): column}.
NAVIGATION_PARTS: dict[str, str] = {
    "tap_forward": "taps_forward",
    "tap_back": "taps_back",
    "tap_exit": "taps_exit",
    "swipe_forward": "swipe_forward",
}
PROFILE_ACTIVITY_PARTS: dict[str, str] = {
    part: f"profile_activity_{part}"
    for part in ("bio_link_clicked", "call", "direction", "email", "other", "text")
}
BREAKDOWNS: dict[str, tuple[str, dict[str, str]]] = {
    "navigation": ("story_navigation_action_type", NAVIGATION_PARTS),
    "profile_activity": ("action_type", PROFILE_ACTIVITY_PARTS),
}
METRIC_COLUMNS: tuple[str, ...] = (
    *PLAIN_METRICS,
    *EXTRA_METRICS,
    "navigation",
    *NAVIGATION_PARTS.values(),
    "profile_activity",
    *PROFILE_ACTIVITY_PARTS.values(),
)


def metric_requests(extra: Sequence[str] = ()) -> Sequence[tuple[tuple[str, ...], str | None]]:
    """The insights calls one story needs: (metrics, breakdown) per call; `extra` metrics (from
    `EXTRA_METRICS`) ride with the plain ones."""
    return (
        ((*PLAIN_METRICS, *(m for m in extra if m not in PLAIN_METRICS)), None),
        *(((name,), dimension) for name, (dimension, _) in BREAKDOWNS.items()),
    )


def columns_of(metric: str) -> tuple[str, ...]:
    """The row columns one requested metric fills: itself, and a breakdown's parts."""
    if metric in BREAKDOWNS:
        return (metric, *BREAKDOWNS[metric][1].values())
    return (metric,)


# Metrics that exist only with Facebook Login (graph.facebook.com): never asked for an account that
# uses Instagram Login, so their columns stay null without blaming Meta (graph-api.md §11).
FACEBOOK_LOGIN_ONLY: Final = frozenset({"link_clicks", "total_views", "facebook_views"})


def available(metric: str, login: str) -> bool:
    """Whether `metric` can be asked for an account of this login ("facebook" or "instagram")."""
    return login == "facebook" or metric not in FACEBOOK_LOGIN_ONLY


def for_login(
    requests: Iterable[tuple[tuple[str, ...], str | None]], login: str
) -> list[tuple[tuple[str, ...], str | None]]:
    """The insights calls of `requests` that this login can make, without its missing metrics
    (a call left without metrics is dropped)."""
    kept = []
    for metrics, breakdown in requests:
        allowed = tuple(m for m in metrics if available(m, login))
        if allowed:
            kept.append((allowed, breakdown))
    return kept
