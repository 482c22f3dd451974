"""What each listed story's row says: its values, status and why (`story_outcome`), and the
insights phase of one account that produces them (`read_outcomes`).

Statuses (DESIGN.md): `ok` means every requested metric was read. Otherwise, in this order:

- `error`: the listing gave the story no valid timestamp (values read are kept);
- `expired`: the story is past its `expires_at`, or gone from a fresh listing after 100/33;
- `not_enough_viewers`: Meta withheld the story's calls (#10) and nothing was read;
- `partial`: some values read; `insights_error` names the calls withheld or failed, the metrics
  refused or no longer asked, and the metrics Meta left out or sent as no count;
- `error` (nothing read because of errors) or `unavailable` (Meta answered, with nothing in it).

Null stays null: a metric that was refused, failed or came back empty is never a zero.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ig_story_metrics.graph.client import GraphClient, Session
from ig_story_metrics.graph.errors import GraphError, NotEnoughViewers, UnsupportedRequest
from ig_story_metrics.graph.insights import CallResult, Insights, InsightsCall, fetch_insights
from ig_story_metrics.graph.payload import parse_insights
from ig_story_metrics.graph.stories import list_stories
from ig_story_metrics.model.metrics import columns_of
from ig_story_metrics.model.snapshot import InsightsStatus
from ig_story_metrics.model.story import Story
from ig_story_metrics.redact import scrub

log = logging.getLogger(__name__)

Outcome = tuple[dict[str, int | None], InsightsStatus, str | None]


@dataclass(slots=True)
class _Read:
    """One story's calls, sorted by what happened to them."""

    metrics: dict[str, int | None] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    withheld: list[CallResult] = field(default_factory=list)
    failed: list[CallResult] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    not_asked: list[str] = field(default_factory=list)

    def take(self, result: CallResult) -> None:
        self.rejected.extend(result.rejected)
        self.not_asked.extend(result.not_asked)
        if isinstance(result.error, NotEnoughViewers):
            self.withheld.append(result)
        elif result.error is not None:
            self.failed.append(result)
        elif result.payload is not None:
            self.requested.extend(_columns(result.call.metrics))
            found = parse_insights(result.payload)
            if not self.metrics:  # the first answer of the story: its values as they are
                self.metrics = found
                return
            for column, value in found.items():
                if value is not None or column not in self.metrics:
                    self.metrics[column] = value

    @property
    def has_values(self) -> bool:
        return any(v is not None for v in self.metrics.values())

    def notes(self) -> list[str]:
        notes = [
            f"withheld by Meta ({r.call.label}): {r.error.message}"
            for r in self.withheld
            if r.error
        ]
        notes += [f"{r.call.label} failed: {r.error.describe()}" for r in self.failed if r.error]
        if self.rejected:
            notes.append(
                "metrics rejected by the Graph API: " + ", ".join(dict.fromkeys(self.rejected))
            )
        if self.not_asked:
            notes.append(
                "not asked: "
                + ", ".join(dict.fromkeys(self.not_asked))
                + " (refused by the Graph API for every story of a batch of this account)"
            )
        unread = [c for c in dict.fromkeys(self.requested) if self.metrics.get(c) is None]
        if unread:
            notes.append(
                "not read (left out of Meta's answer, empty, or not a count): " + ", ".join(unread)
            )
        return list(dict.fromkeys(notes))


@functools.lru_cache(maxsize=64)
def _columns(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a call for `metrics` fills (the same few calls for every story)."""
    return tuple(c for m in metrics for c in columns_of(m))


def story_outcome(
    story: Story, results: Sequence[CallResult], now: datetime, *, gone: bool = False
) -> Outcome:
    """Merge one story's insights calls into (metric values, status, error message).

    `gone`: the story was missing from a fresh listing after Meta answered 100/33 for it.
    """
    read = _Read()
    for result in results:
        read.take(result)
    metrics, notes = read.metrics, read.notes()
    if story.posted_at is None or story.expires_at is None:
        why = story.problem or "listed without a valid timestamp"
        return metrics, "error", _join([why, *notes])
    errors = [r.error for r in (*read.failed, *read.withheld) if r.error]
    if gone or (now >= story.expires_at and (errors or not read.has_values)):
        why = (
            "the story left the listing after the Graph API answered 100/33 (deleted or expired)"
            if gone
            else "the story expired before its insights were read"
        )
        return metrics, "expired", _join([why, *notes])
    if read.withheld and not read.has_values:
        first = read.withheld[0].error
        return {}, "not_enough_viewers", first.message if first else None
    message = _join(notes)
    if not read.has_values:
        if read.failed or read.rejected or read.not_asked:
            return metrics, "error", message
        return metrics, "unavailable", _join(["the Graph API returned no insights data", *notes])
    return metrics, ("partial" if message else "ok"), message


def _join(notes: Sequence[str]) -> str | None:
    return scrub("; ".join(notes)) if notes else None


@dataclass(slots=True)
class AccountOutcomes:
    """Every story's outcome; what stopped the account (its stories still have their rows)."""

    outcomes: dict[str, Outcome]
    error: Exception | None = None
    warnings: list[str] = field(default_factory=list)
    refused_metrics: list[str] = field(default_factory=list)


def _guarded(
    session: Session, story: Story, results: Sequence[CallResult], now: datetime, gone: bool
) -> Outcome:
    """The story's outcome; a bug turning its answers into values costs that story only (an
    `error` outcome, the traceback in the log at ERROR), never its account's other stories."""
    try:
        return story_outcome(story, results, now, gone=gone)
    except Exception as exc:
        log.exception(
            "%s: story %s: unexpected error reading its insights",
            session.account,
            story.id,
            extra={"event": "story_crash", "account": session.account, "story_id": story.id},
        )
        return {}, "error", f"unexpected error reading the insights ({type(exc).__name__}: {exc})"


async def read_outcomes(
    client: GraphClient,
    session: Session,
    stories: Sequence[Story],
    clock: Callable[[], datetime],
) -> AccountOutcomes:
    """Fetch the stories' insights and give every story its outcome, whatever happens.

    A failure that stops the account (190, a permission #10, a bug) keeps the values already read;
    the stories not read yet get `error` rows; `AccountOutcomes.error` carries the failure.
    """
    ids = [story.id for story in stories]

    def lapsed(story_id: str) -> bool:
        expires = by_id[story_id].expires_at
        return expires is not None and clock() >= expires

    by_id = {story.id: story for story in stories}
    failure: Exception | None = None
    try:
        insights = (
            await fetch_insights(client, session, ids, lapsed=lapsed) if ids else Insights({})
        )
    except Exception as exc:  # a bug must not cost the stories their rows
        failure = exc
        error = GraphError(f"insights not read: {type(exc).__name__}: {exc}")
        insights = Insights({i: [CallResult(InsightsCall(i, ()), error=error)] for i in ids})
    gone, warnings = await _gone(client, session, stories, insights, lapsed)
    if client.batch_refused is not None:
        warnings.append(
            "the Graph API refused batch requests, so this run sends one GET per call: "
            + client.batch_refused.describe()
        )
    now = clock()
    outcomes = {
        s.id: _guarded(session, s, insights.results.get(s.id, []), now, s.id in gone)
        for s in stories
    }
    return AccountOutcomes(
        outcomes, failure or insights.fatal, warnings, insights.refused_metrics()
    )


async def _gone(
    client: GraphClient,
    session: Session,
    stories: Sequence[Story],
    insights: Insights,
    lapsed: Callable[[str], bool],
) -> tuple[set[str], list[str]]:
    """The live stories answered 100/33 to the end that a fresh listing no longer shows."""
    suspects = {
        story.id
        for story in stories
        if not lapsed(story.id)
        and any(isinstance(r.error, UnsupportedRequest) for r in insights.results.get(story.id, []))
    }
    if not suspects or insights.fatal is not None:
        return set(), []
    try:
        listing = await list_stories(client, session)
    except GraphError as exc:
        return set(), [f"could not list again to check stories answered 100/33: {exc.describe()}"]
    if listing.error is not None:
        return set(), [
            f"could not list again to check stories answered 100/33: {listing.error.describe()}"
        ]
    listed = {story.id for story in listing.stories}
    return suspects - listed, []
