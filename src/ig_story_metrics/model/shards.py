"""Shards of a fleet: which accounts one of N parallel runs captures.

An account belongs to shard `sha256(name) mod N`: stable across runs, machines and Python versions
(unlike `hash()`), independent of the accounts file's order, and each account in exactly one shard.
Daily files are per account, so shards never write the same object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_SHARDS = 10_000  # Cloud Run Jobs run at most 10,000 tasks


def shard_of(name: str, count: int) -> int:
    """The shard (0 to count - 1) that captures the account `name`."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (written `index/count`, e.g. 0/4)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1 to {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be 0 to {self.count - 1} for {self.count} shards, "
                f"not {self.index}"
            )

    def holds(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` as a Shard; ValueError with a one-line reason otherwise."""
    index, slash, count = text.strip().partition("/")
    if not slash or not index.isdigit() or not count.isdigit():
        raise ValueError(f"--shard takes I/N, e.g. 0/4 (shard I of N), not {text!r}")
    return Shard(int(index), int(count))
