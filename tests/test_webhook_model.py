"""Reading `story_insights` deliveries (model/webhook.py): the handshake and signature checks, -1,
unknown keys, batched, duplicated and out-of-order deliveries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ig_story_metrics.model.webhook import (
    combine,
    entry_user_ids,
    handshake_answer,
    parse_delivery,
    sign,
    signature_valid,
)

SECRET = "s3cret"


def body(*entries: tuple[str, int, list[dict[str, object]]]) -> bytes:
    return json.dumps(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": user,
                    "time": time,
                    "changes": [{"field": "story_insights", "value": v} for v in values],
                }
                for user, time, values in entries
            ],
        }
    ).encode()


def test_minus_one_is_null_with_a_note_and_unknown_keys_are_kept() -> None:
    """-1 becomes null (never -1 or 0) with a note; legacy and unknown count keys are read;
    a key that is not a count is kept as it came."""
    [insight] = parse_delivery(
        body(("1", 1547687043, [{"media_id": "9", "reach": -1, "exits": 0, "views": 30, "x": "y"}]))
    )
    assert insight.values == {"reach": None, "exits": 0, "views": 30}
    assert insight.notes == ("reach: fewer than 5 (Meta sends -1)",)
    assert insight.other == {"x": "y"}
    assert insight.sent_at == datetime.fromtimestamp(1547687043, UTC)


def test_batched_delivery_reads_every_change_of_every_entry() -> None:
    """Two entries, three changes; other fields and changes without media_id are skipped."""
    data = json.loads(
        body(
            ("1", 10, [{"media_id": "a", "reach": 5}, {"media_id": "b", "reach": 6}]),
            ("2", 11, [{"media_id": "c", "reach": 7}, {"reach": 8}]),
        )
    )
    data["entry"][1]["changes"].append({"field": "comments", "value": {"media_id": "d"}})
    found = parse_delivery(json.dumps(data).encode())
    assert [(i.ig_user_id, i.media_id, i.values["reach"]) for i in found] == [
        ("1", "a", 5),
        ("1", "b", 6),
        ("2", "c", 7),
    ]


def test_duplicates_count_once_and_the_latest_wins_in_any_order() -> None:
    """The same body twice is one delivery; a later delivery's values win whatever the arrival
    order; a later -1 does not erase a known value."""
    first = body(("1", 100, [{"media_id": "a", "reach": 10, "replies": 1}]))
    later = body(("1", 200, [{"media_id": "a", "reach": 12, "replies": -1}]))
    for order in ([first, later, first], [later, first, later]):
        combined = combine(i for b in order for i in parse_delivery(b))
        final = combined[("1", "a")]
        assert final.deliveries == 2
        assert final.values == {"reach": 12, "replies": 1}
        assert final.notes == []
        assert final.received_at == datetime.fromtimestamp(200, UTC)


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b'{"entry": 3}', b"\xff\xfe", b"[" * 5000])
def test_unexpected_bodies_give_nothing(raw: bytes) -> None:
    """A body that is not the expected JSON parses to nothing and names no account."""
    assert parse_delivery(raw) == []
    assert entry_user_ids(raw) is None


def test_signature_and_handshake_checks() -> None:
    """The signature of the raw body with the app secret is accepted, anything else is not; the
    handshake answers the challenge only for the right token and mode."""
    raw = b'{"entry": []}'
    good = sign(raw, SECRET)
    assert signature_valid(raw, good, SECRET)
    assert signature_valid(raw, good.upper().replace("SHA256=", "sha256="), SECRET)
    for bad in (None, "", good[:-1], good + "0", "sha1=" + good[7:], good.replace("sha256=", "")):
        assert not signature_valid(raw, bad, SECRET)
    assert not signature_valid(raw + b" ", good, SECRET)
    params = {"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "42"}
    assert handshake_answer(params, "t") == "42"
    assert handshake_answer(params, "u") is None
    assert handshake_answer(params, None) is None
    assert handshake_answer({**params, "hub.mode": "x"}, "t") is None
