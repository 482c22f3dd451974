"""Meta's `story_insights` webhook, as pure functions: the handshake, the signature, where a
delivery is stored, and what it says (graph-api.md §7).

A delivery is `{"object": "instagram", "entry": [{"id": IG_USER_ID, "time": UNIX, "changes":
[{"field": "story_insights", "value": {"media_id": ..., "reach": 17, ...}}]}]}`. Deliveries may be
batched, duplicated and out of order; a metric below 5 is sent as `-1` and read as null with a note
(never -1, never 0). Metric keys are read leniently: the legacy ones (`LEGACY_METRICS`) and any other
integer key are kept; a key that is not a count is kept as it came in `other`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ig_story_metrics.model.numbers import as_int

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
FIELD = "story_insights"
UNKNOWN_ACCOUNT = "_unknown"  # not a valid account name: never mistaken for one
LEGACY_METRICS: tuple[str, ...] = (
    "impressions",
    "reach",
    "replies",
    "exits",
    "taps_forward",
    "taps_back",
)
# Keys newer deliveries may add (unconfirmed): given their own column when they come.
NEWER_METRICS: tuple[str, ...] = ("views", "shares", "swipe_forward", "navigation")
WEBHOOK_METRICS: tuple[str, ...] = (*LEGACY_METRICS, *NEWER_METRICS)
BELOW_FIVE = -1
BELOW_FIVE_NOTE = "fewer than 5 (Meta sends -1)"


def handshake_answer(params: Mapping[str, str], verify_token: str | None) -> str | None:
    """The challenge to answer with when `params` are a valid subscription handshake for
    `verify_token` (compared in constant time), else None (answer 403)."""
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    given = params.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    return params.get("hub.challenge", "")


def signature_valid(body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether `header` is `sha256=<hex>` of HMAC-SHA256(body, app_secret), compared in constant
    time. Absent, malformed (not 64 hex digits) or wrong: False."""
    if not header or not app_secret or not header.startswith(SIGNATURE_PREFIX):
        return False
    given = header[len(SIGNATURE_PREFIX) :].strip().lower()
    if len(given) != 64 or any(c not in "0123456789abcdef" for c in given):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given, expected)


def sign(body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta sends with `body`."""
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def delivery_key(account: str, day: date, body: bytes) -> str:
    """Where one delivery is stored, write-once: the same body lands on the same key."""
    return f"{deliveries_folder(account)}/{day.isoformat()}/{body_digest(body)}.json"


def deliveries_folder(account: str) -> str:
    """The folder of `account`'s deliveries: one folder per UTC day received below it."""
    return f"Instagram/{account}/webhooks/{FIELD}"


def decode(body: bytes) -> dict[str, Any] | None:
    """The delivery as a JSON object, or None when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def entries(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = data.get("entry")
    return [e for e in found if isinstance(e, Mapping)] if isinstance(found, list) else []


def entry_user_ids(body: bytes) -> list[str] | None:
    """The `entry[].id` values of a delivery (in order, once each); None when the body is not the
    expected JSON (an object with a non-empty `entry` list of objects with a string or int id)."""
    data = decode(body)
    if data is None:
        return None
    ids = [_text_id(e.get("id")) for e in entries(data)]
    if not ids or any(i is None for i in ids):
        return None
    return list(dict.fromkeys(i for i in ids if i is not None))


def _text_id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value.isdigit() and value.isascii() else None


@dataclass(frozen=True, slots=True)
class StoryInsight:
    """What one change of one delivery says about one story."""

    ig_user_id: str
    media_id: str
    sent_at: datetime | None
    digest: str  # sha256 of the delivery's body: orders duplicates deterministically
    values: dict[str, int | None] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    other: dict[str, Any] = field(default_factory=dict)


def parse_delivery(body: bytes) -> list[StoryInsight]:
    """Every `story_insights` change of a delivery (an empty list for anything else)."""
    data = decode(body)
    if data is None:
        return []
    digest = body_digest(body)
    found: list[StoryInsight] = []
    for entry in entries(data):
        user = _text_id(entry.get("id"))
        sent = _unix(entry.get("time"))
        changes = entry.get("changes")
        if user is None or not isinstance(changes, list):
            continue
        for change in changes:
            if not isinstance(change, Mapping) or change.get("field") != FIELD:
                continue
            insight = _insight(user, sent, digest, change.get("value"))
            if insight is not None:
                found.append(insight)
    return found


def _insight(user: str, sent: datetime | None, digest: str, value: object) -> StoryInsight | None:
    if not isinstance(value, Mapping):
        return None
    raw_media = value.get("media_id")
    media = raw_media if isinstance(raw_media, str) and raw_media.strip() else _text_id(raw_media)
    if media is None:
        return None
    values: dict[str, int | None] = {}
    notes: list[str] = []
    other: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "media_id" or not isinstance(key, str):
            continue
        number = as_int(raw)
        if number == BELOW_FIVE:
            values[key] = None
            notes.append(f"{key}: {BELOW_FIVE_NOTE}")
        elif number is not None and number >= 0:
            values[key] = number
        else:
            other[key] = raw
    return StoryInsight(user, media, sent, digest, values, tuple(notes), other)


def _unix(value: object) -> datetime | None:
    number = as_int(value)
    if number is None or not 0 < number < 253402300800:  # before year 10000
        return None
    return datetime.fromtimestamp(number, UTC)


@dataclass(slots=True)
class FinalWebhook:
    """The webhook's word on one story, over every delivery about it."""

    values: dict[str, int | None]
    notes: list[str]
    other: dict[str, Any]
    received_at: datetime | None
    deliveries: int


def combine(insights: Iterable[StoryInsight]) -> dict[tuple[str, str], FinalWebhook]:
    """(ig_user_id, media_id) -> its values over every delivery: duplicates count once, later
    deliveries (by `entry.time`, then body digest) win metric by metric, and a known value is not
    replaced by a later -1."""
    unique = {(i.ig_user_id, i.media_id, i.digest): i for i in insights}
    ordered = sorted(unique.values(), key=_order)
    combined: dict[tuple[str, str], FinalWebhook] = {}
    for item in ordered:
        final = combined.setdefault(
            (item.ig_user_id, item.media_id), FinalWebhook({}, [], {}, None, 0)
        )
        final.deliveries += 1
        for key, number in item.values.items():
            if number is not None or final.values.get(key) is None:
                final.values[key] = number
        final.notes = sorted(
            {n for n in [*final.notes, *item.notes] if final.values.get(n.split(":")[0]) is None}
        )
        final.other.update(item.other)
        if item.sent_at is not None:
            final.received_at = item.sent_at
    return combined


def _order(item: StoryInsight) -> tuple[datetime, str]:
    return (item.sent_at or datetime.min.replace(tzinfo=UTC), item.digest)
