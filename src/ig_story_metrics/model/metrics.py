"""The metrics catalogue: what a story's insights calls ask for, and the columns they fill."""

from __future__ import annotations

from collections.abc import Sequence

# Plain metrics, asked in one call. `reposts` exists since Dec 2025 on every version.
PLAIN_METRICS: tuple[str, ...] = (
    "views",
    "reach",
    "replies",
    "shares",
    "total_interactions",
    "follows",
    "profile_visits",
    "reposts",
)
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
    "navigation",
    *NAVIGATION_PARTS.values(),
    "profile_activity",
    *PROFILE_ACTIVITY_PARTS.values(),
)


def metric_requests() -> Sequence[tuple[tuple[str, ...], str | None]]:
    """The insights calls one story needs: (metrics, breakdown) per call."""
    return (
        (PLAIN_METRICS, None),
        *(((name,), dimension) for name, (dimension, _) in BREAKDOWNS.items()),
    )
