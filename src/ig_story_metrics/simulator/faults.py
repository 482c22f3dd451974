"""Faults on demand, reproducible from a seed.

Each decision hashes (seed, kind, request, attempt): the n-th attempt of the same request gets the
same fate in every run, whatever order concurrent requests arrive in, and a retry rolls again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def option(
    default: object,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    flag: str | None = None,
) -> Any:
    """A fault field that `ig-story-metrics simulate` offers as a command-line option.

    `low`/`high` bound numbers; `flag` names the option when it is not the field's name in
    kebab-case; set-valued fields are repeatable options.
    """
    if isinstance(default, frozenset):
        return field(default=default, metadata={"help": help, "flag": flag})
    return field(default=default, metadata={"help": help, "min": low, "max": high, "flag": flag})


def _rate(help: str) -> Any:
    return option(0.0, help, low=0.0, high=1.0)


@dataclass(frozen=True, slots=True)
class Faults:
    """What to break, and how often (rates are fractions from 0 to 1).

    The one definition of the simulator's faults: `simulate` builds its options from these fields.
    """

    seed: int = 0
    latency_seconds: float = option(
        0.0,
        "Delay of every HTTP request before it is answered (a distant server); 0: none.",
        low=0.0,
        high=60.0,
        flag="--latency",
    )
    transient_rate: float = _rate("Share of calls failing with code 1 or 2 (HTTP 5xx).")
    throttle_rate: float = _rate(
        "Share of calls that start a throttling burst: #80002 with "
        "estimated_time_to_regain_access for every call of that account during the burst."
    )
    throttle_seconds: float = option(60.0, "Length of a throttling burst.", low=0.0, high=3600.0)
    slow_rate: float = _rate("Share of answers delayed by --slow-seconds.")
    slow_seconds: float = option(5.0, "Delay of a slow answer.", low=0.0, high=600.0)
    drop_rate: float = _rate("Share of connections closed without answer.")
    html_rate: float = _rate("Share of answers replaced by an HTML 502 page.")
    null_rate: float = _rate("Share of batch operations left null.")
    expire_rate: float = _rate("Share of listed stories that expire before their insights.")
    usage_percent: float = option(
        0.0, "Least usage percentage in usage headers.", low=0.0, high=100.0
    )
    expired_tokens: frozenset[str] = option(
        frozenset(),
        "Account whose token has expired (#190/463); repeatable.",
        flag="--expired-token",
    )
    rejected_metrics: frozenset[str] = option(
        frozenset(),
        "Metric refused with #100 (for --reject-share of the stories), e.g. views; repeatable.",
        flag="--reject-metric",
    )
    reject_share: float = option(
        1.0, "Share of stories for which --reject-metric is refused.", low=0.0, high=1.0
    )
    # Payload shapes seen in the wild (the values stay true; only their shape changes).
    no_total_rate: float = _rate(
        "Share of breakdown answers without their total (no `value`, no `values`)."
    )
    no_dimension_keys_rate: float = _rate("Share of breakdown answers without `dimension_keys`.")
    no_breakdown_rate: float = _rate("Share of breakdown answers with a total but no `breakdowns`.")
    odd_case_rate: float = _rate(
        "Share of breakdown answers with dimension values in UPPER or Mixed case."
    )
    missing_metric_rate: float = _rate("Share of requested metrics left out of an answer.")
    empty_values_rate: float = _rate('Share of metrics answered with `"values": []`.')
    string_value_rate: float = _rate('Share of metric values sent as a string, e.g. "123".')
    huge_value_rate: float = _rate("Share of metric values replaced by 2**70.")
    # Faults of single calls, accounts and the listing.
    unsupported_rate: float = _rate(
        'Share of insights calls of live stories answered 100/33 "Unsupported get request".'
    )
    withheld_rate: float = _rate(
        "Share of breakdown calls answered (#10) Not enough viewers although the story has enough."
    )
    revoke_after: int = option(
        0, "Calls an account may make before its token is revoked (#190); 0: never.", low=0
    )
    refuse_batches: bool = option(
        False, "Refuse every batch POST as a whole (#12, a deprecated request feature)."
    )
    broken_page: int = option(
        0, "Listing page (1, 2, ...) from which every page fails with #100; 0: none.", low=0
    )
    bad_timestamp_rate: float = _rate(
        "Share of listed stories with a null, garbage or year-9999 timestamp."
    )
    duplicate_rate: float = _rate(
        "Share of listing pages that repeat the previous page's last story."
    )
    odd_caption_rate: float = _rate("Share of listed captions holding a lone surrogate.")
    corrupt_gzip_rate: float = _rate("Share of answers sent as gzip that is not gzip.")

    @property
    def any(self) -> bool:
        """Whether anything breaks (a plain delay on every request breaks nothing)."""
        return self != Faults(seed=self.seed, latency_seconds=self.latency_seconds)


@dataclass
class Dice:
    """Seeded, order-independent decisions, counting attempts per request."""

    faults: Faults
    _attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def roll(
        self, kind: str, key: str | Callable[[], str], rate: float, *, repeat: bool = True
    ) -> bool:
        """True with probability `rate` for this (kind, key) and attempt; `repeat=False` keeps
        the first attempt's fate for every later attempt (a story that expired stays expired).
        `key` may be a function that makes it: called only when `rate` is above 0 (a fleet's run
        rolls every fault for every operation, most of them at rate 0)."""
        if rate <= 0:
            return False
        if callable(key):
            key = key()
        if repeat:
            with self._lock:
                self._attempts[(kind, key)] += 1
                attempt = self._attempts[(kind, key)]
        else:
            attempt = 0
        digest = hashlib.sha256(f"{self.faults.seed}:{kind}:{key}:{attempt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate
