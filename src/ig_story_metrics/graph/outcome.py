"""One story's insights calls -> (metric values, status, error message)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ig_story_metrics.graph.errors import GraphError, NotEnoughViewers, StoryExpired
from ig_story_metrics.graph.insights import CallResult
from ig_story_metrics.graph.payload import parse_insights
from ig_story_metrics.model.snapshot import InsightsStatus
from ig_story_metrics.model.story import Story


def story_outcome(
    story: Story, results: Sequence[CallResult], now: datetime
) -> tuple[dict[str, int | None], InsightsStatus, str | None]:
    """Merge one story's insights calls into (metric values, status, error message).

    Null stays null: a metric that was refused, failed or came back empty is never a zero.
    """
    metrics: dict[str, int | None] = {}
    errors: list[GraphError] = []
    rejected: list[str] = []
    empty = 0
    for result in results:
        rejected.extend(result.rejected)
        if result.error is not None:
            errors.append(result.error)
        elif result.payload is not None:
            values = parse_insights(result.payload)
            empty += not values
            metrics.update(values)
    has_values = any(v is not None for v in metrics.values())
    if any(isinstance(e, NotEnoughViewers) for e in errors):
        return {}, "not_enough_viewers", _first(errors, NotEnoughViewers)
    gone = any(isinstance(e, StoryExpired) for e in errors)
    if gone or (now >= story.expires_at and (errors or not has_values)):
        why = _first(errors, StoryExpired) or "the story expired before its insights were read"
        return metrics, "expired", why
    notes = [e.describe() for e in errors]
    if rejected:
        notes.append("metrics rejected by the Graph API: " + ", ".join(dict.fromkeys(rejected)))
    if empty and has_values:
        notes.append(f"{empty} insights call(s) returned no data")
    message = "; ".join(dict.fromkeys(notes)) or None
    if not has_values:
        if errors or rejected:
            return metrics, "error", message
        return metrics, "unavailable", "the Graph API returned no insights data"
    return metrics, ("partial" if message else "ok"), message


def _first(errors: Sequence[GraphError], kind: type[GraphError]) -> str | None:
    return next((e.message for e in errors if isinstance(e, kind)), None)
