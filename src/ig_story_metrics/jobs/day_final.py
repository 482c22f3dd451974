"""The simulated day's webhook and final values: the simulator's signed `story_insights`
deliveries go to an in-process receiver (the receiver's own checks and storage, without the HTTP
layer of functions-framework), and the day ends with `finalize` and the share of stories
`complete`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from ig_story_metrics.errors import StorageError
from ig_story_metrics.jobs.finalize import FinalizeResult, finalize
from ig_story_metrics.jobs.webhooks import store_delivery
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.webhook import SIGNATURE_HEADER, signature_valid
from ig_story_metrics.report.audit import DayRun
from ig_story_metrics.storage import Lake

Inbox = Callable[[bytes, Mapping[str, str]], int]


def inbox(
    lake: Lake, accounts: Iterable[Account], app_secret: str, clock: Callable[[], datetime]
) -> Inbox:
    """A receiver for the simulator's deliveries: 403 unless signed with `app_secret`, else
    stored write-once (200), or 503 when storing failed (the sender retries)."""
    known = list(accounts)

    def receive(body: bytes, headers: Mapping[str, str]) -> int:
        if not signature_valid(body, headers.get(SIGNATURE_HEADER), app_secret):
            return 403
        try:
            store_delivery(lake, known, body, clock())
        except StorageError:
            return 503
        return 200

    return receive


def finalize_day(
    lake: Lake, accounts: Iterable[Account], day: DayRun, now: datetime
) -> FinalizeResult:
    """The final values of every story that expired during the replay; the day's figures."""
    days = (now.date() - day.start.date()).days + 1
    result = finalize(lake, {a.name: a.ig_user_id for a in accounts}, now, days)
    day.final_stories = result.stories
    day.final_complete_share = result.complete_share
    day.final_sources = dict(sorted(result.sources.items()))
    return result
