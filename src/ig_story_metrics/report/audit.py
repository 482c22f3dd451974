"""The audit report (coverage per account and day), its one `audit` log entry, and the cost and
coverage figures of a simulated day. Rendering on a terminal is in `terminal.py`.

    log_audit(report)   one entry, event `audit`: INFO when every threshold holds, WARNING if not

A log-based metric counts the `audit` entries with `jsonPayload.ok = false` (deployment/README.md).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, Final

from pydantic import BaseModel, Field, computed_field

from ig_story_metrics.model.coverage import DayCoverage, final_share

AUDIT_LOGGER: Final = "ig_story_metrics.audit"


class AuditReport(BaseModel):
    """What the snapshots of some days cover, and whether that meets the thresholds."""

    generated_at: datetime
    days: list[date]
    storage_url: str
    final_minutes: float
    late_minutes: float
    max_missed_finals: int = 0
    max_missing_hours: int = 0
    max_missing_final_rows: int = 0
    # A story that expired this long before the audit must have its row in the final-values table
    # (None: that table was not checked).
    final_row_minutes: float | None = None
    coverage: list[DayCoverage] = Field(default_factory=list)
    # Daily files moved aside as unreadable (`...parquet.corrupt-{time}`), of any day: their rows
    # are not in the figures above until a person repairs or removes them.
    quarantined: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def expired(self) -> int:
        return sum(c.expired for c in self.coverage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finals_caught(self) -> int:
        return sum(c.finals_caught for c in self.coverage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def final_share(self) -> float | None:
        """Share of expired stories whose last snapshot came within `final_minutes` of expiry."""
        return final_share(self.coverage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missed_finals(self) -> int:
        return sum(len(c.missed_finals) for c in self.coverage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing_hours(self) -> int:
        return sum(len(c.missing_hours) for c in self.coverage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def late_first_seen(self) -> int:
        return sum(len(c.late_first_seen) for c in self.coverage)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing_final_rows(self) -> int:
        """Expired stories without their row in the final-values table."""
        return sum(len(c.missing_final_rows) for c in self.coverage)

    def finalize_hint(self) -> str | None:
        """The command that builds the missing final rows (None: none is missing)."""
        if not self.missing_final_rows or not self.days:
            return None
        days = (self.generated_at.date() - self.days[0]).days + 1
        return f"`ig-story-metrics finalize --days {days}` builds the missing final rows"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return (
            self.missed_finals <= self.max_missed_finals
            and self.missing_hours <= self.max_missing_hours
            and self.missing_final_rows <= self.max_missing_final_rows
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 when the thresholds hold, 1 when more finals, hourly runs or final rows were missed."""
        return 0 if self.ok else 1

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


class JobCost(BaseModel):
    """What one kind of run cost over a simulated day."""

    runs: int = 0
    failed_runs: int = 0
    stored_rows: int = 0
    operations: int = 0
    http_requests: int = 0


class DayRun(BaseModel):
    """A simulated day: its span, what each job cost, and the coverage with and without sweeps."""

    start: datetime
    end: datetime
    hourly: JobCost = Field(default_factory=JobCost)
    sweep: JobCost = Field(default_factory=JobCost)
    share_hourly_only: float | None = None
    share_with_sweeps: float | None = None
    duration_seconds: float = 0.0
    # After the replay: `finalize` over its days (stories, share `complete`, rows per final_source).
    final_stories: int | None = None
    final_complete_share: float | None = None
    final_sources: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def extra_operations(self) -> float | None:
        """The sweeps' API operations as a share of the hourly runs' operations."""
        if not self.hourly.operations:
            return None
        return self.sweep.operations / self.hourly.operations


def _day_entry(c: DayCoverage) -> dict[str, Any]:
    return {
        "account": c.account,
        "day": c.day.isoformat(),
        "stories_seen": c.stories_seen,
        "expired": c.expired,
        "finals_caught": c.finals_caught,
        "missed_finals": [m.story_id for m in c.missed_finals],
        "missing_hours": [h.strftime("%H:%M") for h in c.missing_hours],
        "late_first_seen": [s.story_id for s in c.late_first_seen],
        "missing_final_rows": list(c.missing_final_rows),
        "largest_gap_minutes": c.largest_gap_minutes,
    }


def log_audit(report: AuditReport, logger: logging.Logger | None = None) -> None:
    """One `audit` entry with the figures of the report, for a log-based alert."""
    log = logger or logging.getLogger(AUDIT_LOGGER)
    share = report.final_share
    log.log(
        logging.INFO if report.ok else logging.WARNING,
        "audit %s..%s: %d of %d expired stories had a snapshot in their last %g minutes "
        "(%s); %d missed, %d hourly runs missing, %d stories first seen late, "
        "%d without their final row%s",
        report.days[0] if report.days else "-",
        report.days[-1] if report.days else "-",
        report.finals_caught,
        report.expired,
        report.final_minutes,
        "-" if share is None else f"{share:.1%}",
        report.missed_finals,
        report.missing_hours,
        report.late_first_seen,
        report.missing_final_rows,
        f" ({hint})" if (hint := report.finalize_hint()) else "",
        extra={
            "event": "audit",
            "ok": report.ok,
            "days": [d.isoformat() for d in report.days],
            "expired": report.expired,
            "finals_caught": report.finals_caught,
            "final_share": share,
            "missed_finals": report.missed_finals,
            "missing_hours": report.missing_hours,
            "late_first_seen": report.late_first_seen,
            "missing_final_rows": report.missing_final_rows,
            "final_minutes": report.final_minutes,
            "storage_url": report.storage_url,
            "coverage": [_day_entry(c) for c in report.coverage],
        },
    )
