"""The token health report (`tokens check`, the function's `{"mode": "tokens"}`) and its log entries.

Never a token: a token is named by the variable it comes from and the accounts using it.

    log_tokens(report)    after every check

| event              | severity | when                                                                  |
| ------------------ | -------- | --------------------------------------------------------------------- |
| `token_ok`         | INFO     | a token is valid, has its permissions and is not expiring             |
| `token_expiring`   | WARNING  | the token or its data access ends within 14 days; `alert` is true on   |
|                    |          | the days a log-based alert should fire (14, 7 and from 1 day left)     |
| `token_problem`    | ERROR    | a token is missing, invalid or lacks a permission                      |
| `token_renewed`    | INFO     | a token was renewed and stored as a new secret version                 |
| `token_renew_failed` | ERROR  | renewing a token that is due failed                                    |
| `tokens_summary`   | INFO     | one per check; ERROR when a token fails the check                      |
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, Field, computed_field

TOKENS_LOGGER: Final = "ig_story_metrics.tokens"
WARN_WITHIN_DAYS: Final = 14


class Deadline(BaseModel):
    """A date on which the token stops working: its own expiry, or its data access's."""

    what: str  # "token" or "data access"
    at: datetime
    days_left: float
    alert: bool  # a daily check on this day should page someone (14, 7, <= 1 days)


class TokenStatus(BaseModel):
    """One distinct token: where it comes from, who uses it, what Meta says."""

    variables: list[str]
    accounts: list[str]
    login: str
    secrets: list[str] = Field(default_factory=list)
    kind: str | None = None
    valid: bool | None = None  # None: not checked (no token to check)
    owner: str | None = None
    expires_at: str = "unknown"  # "never", "unknown", or the date ("~" marks an estimate)
    data_access_expires_at: str | None = None
    deadlines: list[Deadline] = Field(default_factory=list)
    missing_permissions: list[str] = Field(default_factory=list)
    permissions_checked: bool = False
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    renewed: list[str] = Field(default_factory=list)  # secret versions written

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def label(self) -> str:
        return "/".join(self.variables)


class TokensReport(BaseModel):
    """Every distinct token of the configured accounts."""

    checked_at: datetime
    tokens: list[TokenStatus] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tokens)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 when every token passes, 1 when one is invalid, lacks a permission or expires soon."""
        return 0 if self.ok else 1

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def log_tokens(report: TokensReport, logger: logging.Logger | None = None) -> None:
    """One entry per token (and per near deadline), then one summary."""
    log = logger or logging.getLogger(TOKENS_LOGGER)
    for token in report.tokens:
        _log_token(log, token)
    failed = [t.label for t in report.tokens if not t.ok]
    log.log(
        logging.ERROR if failed else logging.INFO,
        "tokens: %d checked, %s",
        len(report.tokens),
        f"{len(failed)} FAILED ({', '.join(failed)})" if failed else "all ok",
        extra={"event": "tokens_summary", "checked": len(report.tokens), "failed": failed},
    )


def _log_token(log: logging.Logger, token: TokenStatus) -> None:
    base: dict[str, Any] = {
        "variables": token.variables,
        "accounts": token.accounts,
        "login": token.login,
        "expires_at": token.expires_at,
        "data_access_expires_at": token.data_access_expires_at,
    }
    who = f"token in {token.label} (accounts {', '.join(token.accounts)})"
    for version in token.renewed:
        log.info("%s renewed: stored as %s", who, version, extra={**base, "event": "token_renewed"})
    for note in token.notes:
        if note.startswith("renewal failed"):
            log.error("%s: %s", who, note, extra={**base, "event": "token_renew_failed"})
    for deadline in token.deadlines:
        if deadline.days_left <= WARN_WITHIN_DAYS:
            log.warning(
                "%s: %s ends on %s UTC, in %.1f days",
                who,
                deadline.what,
                f"{deadline.at:%Y-%m-%d %H:%M}",
                deadline.days_left,
                extra={
                    **base,
                    "event": "token_expiring",
                    "which": deadline.what,
                    "days_left": int(deadline.days_left // 1),
                    "alert": deadline.alert,
                },
            )
    if token.problems:
        log.error(
            "%s: %s",
            who,
            "; ".join(token.problems),
            extra={**base, "event": "token_problem", "problems": token.problems},
        )
    elif not any(d.days_left <= WARN_WITHIN_DAYS for d in token.deadlines):
        log.info("%s ok, expires %s", who, token.expires_at, extra={**base, "event": "token_ok"})
