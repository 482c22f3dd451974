"""The one place that decides "again, and after how long": `RetryPolicy.decide()`.

    decide(error, attempt, deadline) -> Decision(retry=True, after=seconds)
                                      | Decision(retry=False, error=the error to report)

- transient errors back off exponentially with equal jitter (half fixed, half random, so two accounts
  never retry in lock step), capped at `max_seconds`;
- throttling waits what Meta announced (`estimated_time_to_regain_access`), else backs off;
- anything else is final at once; so is the `max_attempts`-th failure ("gave up after N attempts");
- a wait that does not fit in what is left of the run's deadline is final too (`BudgetExhausted`).

`usage_pause()` slows an account down before it hits the wall, from its usage headers. `scale`
multiplies every wait the policy decides (tests use a tiny one: instant retries, same decisions).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ig_story_metrics.clock import Deadline
from ig_story_metrics.graph.errors import GraphError, ThrottledError, TransientError
from ig_story_metrics.graph.usage import Usage


class BudgetExhausted(TransientError):
    """The run's time budget does not allow another wait or attempt."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Retry after `after` seconds, or stop and report `error`."""

    retry: bool
    after: float = 0.0
    error: GraphError | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before trying again, and when to stop (see the module docstring)."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    pause_percent: float = 80.0
    scale: float = 1.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1, 2, ...), before scaling."""
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** max(attempt - 1, 0))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def decide(self, error: GraphError, attempt: int, deadline: Deadline) -> Decision:
        """After the `attempt`-th failure (1, 2, ...) with `error`: again after how long, or stop."""
        if not isinstance(error, TransientError | ThrottledError):
            return Decision(False, error=error)
        if attempt >= self.max_attempts:
            return Decision(False, error=gave_up(error, attempt))
        announced = error.retry_after if isinstance(error, ThrottledError) else None
        wait = (announced or self.backoff(attempt)) * self.scale
        budget = self.check_budget(wait, deadline, error)
        return Decision(True, after=wait) if budget is None else Decision(False, error=budget)

    def check_budget(
        self, wait: float, deadline: Deadline, why: GraphError | None
    ) -> BudgetExhausted | None:
        """None when a `wait` fits in the deadline, else the error that says it does not."""
        if wait <= 0 and not deadline.expired():
            return None
        if wait > 0 and deadline.allows(wait):
            return None
        reason = f" (last error: {why.describe()})" if why else ""
        return BudgetExhausted(
            f"run time budget exhausted: a {wait:.1f}s wait does not fit in the "
            f"{deadline.remaining():.1f}s left{reason}"
        )

    def usage_pause(self, usage: Usage) -> float:
        """Seconds to hold off an account given its latest usage figures (0: go on)."""
        if usage.regain_seconds > 0:
            return usage.regain_seconds * self.scale
        if usage.percent < self.pause_percent:
            return 0.0
        share = min((usage.percent - self.pause_percent) / max(100 - self.pause_percent, 1), 1)
        return max(self.base_seconds, self.max_seconds * share * share) * self.scale


def gave_up(error: GraphError, attempts: int) -> GraphError:
    """The same kind of error, saying how many attempts were made."""
    final = type(error)(
        f"gave up after {attempts} attempts: {error.message}",
        code=error.code,
        subcode=error.subcode,
        http_status=error.http_status,
        fbtrace_id=error.fbtrace_id,
    )
    if isinstance(error, ThrottledError) and isinstance(final, ThrottledError):
        final.retry_after = error.retry_after
    return final
