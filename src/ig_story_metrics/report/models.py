"""The run report: what every account got in one run (models only; rendering is elsewhere)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from pydantic import BaseModel, Field, computed_field

from ig_story_metrics.model.counters import COUNTER_FIELDS, Counters
from ig_story_metrics.redact import scrub


class StoryProblem(BaseModel):
    """A story whose snapshot is not `ok`, and why."""

    story_id: str
    status: str
    error: str | None = None


class AccountReport(BaseModel):
    """One account's part of a run."""

    account: str
    ig_user_id: str
    ok: bool = True
    error: str | None = None
    listed: int = 0
    # listed stories this job did not snapshot (a sweep's stories that do not expire soon)
    not_due: int = 0
    # where the stories came from: "listing" (the Graph API), or "lake" (a sweep planned from the
    # account's last hourly listing)
    planned_from: str = "listing"
    statuses: dict[str, int] = Field(default_factory=dict)
    stored_rows: int = 0
    not_stored: list[str] = Field(default_factory=list)  # story ids whose rows were not stored
    files: list[str] = Field(default_factory=list)
    quarantined: list[str] = Field(default_factory=list)  # unreadable files moved aside
    warnings: list[str] = Field(default_factory=list)
    problems: list[StoryProblem] = Field(default_factory=list)
    rejected_metrics: list[str] = Field(default_factory=list)
    # the media archive (jobs/archive.py): files written this run, stories whose media was not
    # archived and why (tried again next run); a failure here never fails the account
    media_archived: int = 0
    media_failed: dict[str, str] = Field(default_factory=dict)
    http_requests: int = 0
    operations: int = 0
    retries: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    duration_seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def captured(self) -> int:
        """Stories with metrics (all of them, or all Meta would give)."""
        return self.statuses.get("ok", 0) + self.statuses.get("partial", 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def below_threshold(self) -> int:
        return self.statuses.get("not_enough_viewers", 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        """Stories listed whose metrics could not be read (or that were not stored)."""
        if not self.ok and self.stored_rows == 0:
            return self.listed - self.not_due
        return self.listed - self.not_due - self.captured - self.below_threshold

    def count(self, statuses: Counter[str]) -> None:
        self.statuses = dict(sorted(statuses.items()))

    def take_counters(self, counters: Counters) -> None:
        """Copy what the Graph session counted (the one definition: `model.counters`)."""
        for name, value in counters.as_dict().items():
            setattr(self, name, value)


class RunReport(BaseModel):
    """One run (hourly, or a sweep) over several accounts."""

    run_id: str
    capture: str = "hourly"
    fetched_at: datetime
    api_version: str
    storage_url: str
    accounts: list[AccountReport] = Field(default_factory=list)
    duration_seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.accounts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 when every account succeeded, 1 when at least one failed (DESIGN.md)."""
        return 0 if self.ok else 1

    def to_json(self) -> str:
        """The report as JSON, scrubbed of secrets (Meta may echo a token in an error message)."""
        return scrub(self.model_dump_json(indent=2))


assert set(COUNTER_FIELDS) <= set(AccountReport.model_fields)  # noqa: S101 - one definition
