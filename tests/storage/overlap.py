"""Calls of a backend method made to take a bucket's round trip, counted as they overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Overlap:
    """How many calls were in flight at once (`peak`), and on which threads they ran."""

    peak: int = 0
    threads: set[int] = field(default_factory=set)
    _now: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_caller_thread_alone(self) -> bool:
        return (self.peak, self.threads) == (1, {threading.get_ident()})


def paused(
    monkeypatch: pytest.MonkeyPatch, target: object, name: str, seconds: float = 0.05
) -> Overlap:
    """`target.name` pauses `seconds` per call (as a bucket's round trip would), then does what it
    did; the returned `Overlap` follows the calls."""
    method: Callable[..., Any] = getattr(target, name)
    overlap = Overlap()

    def slow(*args: Any, **options: Any) -> Any:
        with overlap._lock:
            overlap._now += 1
            overlap.peak = max(overlap.peak, overlap._now)
            overlap.threads.add(threading.get_ident())
        time.sleep(seconds)
        try:
            return method(*args, **options)
        finally:
            with overlap._lock:
                overlap._now -= 1

    monkeypatch.setattr(target, name, slow)
    return overlap
