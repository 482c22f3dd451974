"""Webhook deliveries in the lake: store one as it came (write-once, per entry's account), and read
them back for the final-values table.

A delivery is stored under `Instagram/{ACCOUNT}/webhooks/story_insights/{date}/{sha256}.json`
(`model.webhook.delivery_key`; `date` = the UTC day it was received) once for every account its
entries name; an `entry.id` that matches no configured account, or a body that is not the expected
JSON, goes under `_unknown`. The same body received twice lands on the same key: a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ig_story_metrics.clock import Deadline
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.model.webhook import (
    UNKNOWN_ACCOUNT,
    StoryInsight,
    deliveries_folder,
    delivery_key,
    entry_user_ids,
    parse_delivery,
)
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.blobs import get, put_once
from ig_story_metrics.storage.scan import side_by_side

log = logging.getLogger("ig_story_metrics.webhooks")


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one delivery."""

    keys: tuple[str, ...]  # where it is (one per account)
    created: int  # how many of them were written now (0: a redelivery)
    expected: bool  # the body was the expected JSON (an `entry` list with ids)


def store_delivery(
    lake: Lake,
    accounts: Iterable[Account],
    body: bytes,
    received: datetime,
    *,
    deadline: Deadline | None = None,
) -> Stored:
    """Store a verified delivery as it came under each of its accounts (see the module).
    Raises `StorageError` when a copy could not be written."""
    by_id = {a.ig_user_id: a.name for a in accounts}
    ids = entry_user_ids(body)
    names = [UNKNOWN_ACCOUNT] if ids is None else [by_id.get(i, UNKNOWN_ACCOUNT) for i in ids]
    keys = tuple(delivery_key(n, received.date(), body) for n in dict.fromkeys(names))
    created = sum(put_once(lake.backend, key, body, deadline=deadline) for key in keys)
    return Stored(keys, created, ids is not None)


def read_deliveries(lake: Lake, account: str, days: Iterable[date]) -> list[StoryInsight]:
    """The story insights of every delivery stored for `account` on `days` (a stored object that
    cannot be parsed adds nothing: it stays in the lake as it came)."""
    wanted = sorted(set(days))
    if not wanted:
        return []
    folder = deliveries_folder(account)
    names = {day.isoformat() for day in wanted}
    # one listing from the first day's folder to the end of the last (days run together: a
    # run's final values read yesterday's and today's), where a listing per day took two
    # requests per account, every run and every sweep (a bucket bills each listing)
    end = wanted[-1] + timedelta(days=1)
    listed = lake.backend.keys(folder, start=wanted[0].isoformat(), end=end.isoformat())
    found: list[StoryInsight] = []
    for key in listed:
        day = key[len(folder) + 1 :].split("/", 1)[0]
        if day not in names or not key.endswith(".json"):
            continue
        body = get(lake.backend, key)
        if body is not None:
            found += parse_delivery(body)
    return found


def account_deliveries(
    lake: Lake, accounts: Mapping[str, str], days: Iterable[date]
) -> list[StoryInsight]:
    """Deliveries of every account name in `accounts` (name -> ig_user_id), only the changes
    whose entry belongs to that account (a batched delivery is stored under each of its accounts),
    in the order of `accounts`.

    Each account's deliveries take a listing, a round trip each on a bucket: they are listed side
    by side (`storage.scan.side_by_side`; the final values of a fleet's run take a hundred
    accounts at a time: with a pause of 30 ms per listing in the GCS emulator, 3.6 s for a
    hundred one at a time, 0.5 s side by side), a local folder's on the calling thread."""
    wanted = list(days)

    def mine(item: tuple[str, str]) -> list[StoryInsight]:
        name, user = item
        return [i for i in read_deliveries(lake, name, wanted) if i.ig_user_id == user]

    return [i for part in side_by_side(lake, mine, list(accounts.items())) for i in part]
