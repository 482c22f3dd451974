"""The per-account counters of a run: one definition shared by the Graph session (which counts),
the run report (which shows them) and the log events (which carry them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    """What talking to the Graph API cost one account in one run."""

    http_requests: int = 0
    operations: int = 0  # API operations: a plain GET is one, a batch counts its operations
    retries: int = 0
    waits: int = 0
    wait_seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        out: dict[str, int | float] = asdict(self)
        out["wait_seconds"] = round(self.wait_seconds, 3)
        return out


COUNTER_FIELDS: tuple[str, ...] = tuple(Counters.__dataclass_fields__)
