"""Faults on demand, reproducible from a seed.

Each decision hashes (seed, kind, request, attempt): the n-th attempt of the same request gets the
same fate in every run, whatever order concurrent requests arrive in, and a retry rolls again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Faults:
    """What to break, and how often (rates are fractions from 0 to 1)."""

    seed: int = 0
    transient_rate: float = 0.0  # operations answered code 1 / 2 (HTTP 500 / 503)
    throttle_rate: float = 0.0  # operations that start a throttling burst for their account
    throttle_seconds: float = 1.0  # how long a burst lasts (announced in the usage header)
    slow_rate: float = 0.0  # HTTP answers delayed by slow_seconds
    slow_seconds: float = 2.0
    drop_rate: float = 0.0  # HTTP connections closed without an answer
    html_rate: float = 0.0  # HTTP answers replaced by an HTML 502 page
    null_rate: float = 0.0  # batch operations left unfinished (a null slot)
    expire_rate: float = 0.0  # listed stories that expire before their insights are asked
    usage_percent: float = 0.0  # the least call_count percentage the usage headers report
    expired_tokens: frozenset[str] = frozenset()  # accounts whose token has expired (#190/463)
    rejected_metrics: frozenset[str] = frozenset()  # metrics refused with #100 for every story

    @property
    def any(self) -> bool:
        return self != Faults(seed=self.seed)


@dataclass
class Dice:
    """Seeded, order-independent decisions, counting attempts per request."""

    faults: Faults
    _attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def roll(self, kind: str, key: str, rate: float, *, repeat: bool = True) -> bool:
        """True with probability `rate` for this (kind, key) and attempt; `repeat=False` keeps
        the first attempt's fate for every later attempt (a story that expired stays expired)."""
        if rate <= 0:
            return False
        if repeat:
            with self._lock:
                self._attempts[(kind, key)] += 1
                attempt = self._attempts[(kind, key)]
        else:
            attempt = 0
        digest = hashlib.sha256(f"{self.faults.seed}:{kind}:{key}:{attempt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate
