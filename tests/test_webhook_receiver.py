"""The `story_insights` webhook receiver as Cloud Run serves it: functions-framework running
main.py's `story_insights_webhook` on a free loopback port, requests over HTTP as Meta sends them."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ig_story_metrics.simulator import SEED_ACCOUNTS

from .conftest import ROOT, write_accounts
from .test_function import lake_state, serve_target

APP_SECRET = "app-secret-for-tests-0123456789"
VERIFY_TOKEN = "verify-token-for-tests"
NPI_ID = SEED_ACCOUNTS["NPI"]


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def delivery(user: str = NPI_ID, media: str = "18023345989012587", reach: int = 17) -> bytes:
    """Meta's documented sample, for one account's story."""
    value = {"media_id": media, "exits": 1, "replies": -1, "reach": reach, "impressions": 28}
    change = {"field": "story_insights", "value": value}
    return json.dumps(
        {"object": "instagram", "entry": [{"id": user, "time": 1547687043, "changes": [change]}]}
    ).encode()


class Receiver:
    def __init__(self, url: str, lake: Path, stdout: Path) -> None:
        self.url, self.lake, self.stdout = url, lake, stdout

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, content=body, headers=headers, timeout=30)

    def stored(self) -> list[Path]:
        return sorted(p for p in self.lake.rglob("*.json") if "webhooks" in p.parts)


@contextmanager
def serve_receiver(workdir: Path) -> Iterator[Receiver]:
    """functions-framework serving `story_insights_webhook` until the block ends."""
    accounts = write_accounts(workdir / "accounts.toml")
    env = {
        "IG_ACCOUNTS_FILE": str(accounts),
        "STORAGE_URL": str(workdir / "lake"),
        "IG_APP_SECRET": APP_SECRET,
        "IG_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
    }
    served = serve_target("story_insights_webhook", ROOT / "main.py", env, workdir, "receiver")
    with served as (url, stdout, _):
        yield Receiver(url, workdir / "lake", stdout)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with serve_receiver(tmp_path_factory.mktemp("receiver")) as served:
        yield served


def test_handshake_answers_the_challenge(receiver: Receiver) -> None:
    """The right verify token gets the challenge back as the body, 200, text/plain."""
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    answer = httpx.get(receiver.url, params=params, timeout=30)
    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
def test_handshake_refused(receiver: Receiver, params: dict[str, str]) -> None:
    """A wrong token or mode is a 403 that echoes neither the challenge nor the token."""
    answer = httpx.get(receiver.url, params=params, timeout=30)
    assert answer.status_code == 403
    assert VERIFY_TOKEN not in answer.text


def test_signed_delivery_is_stored_once_when_sent_twice(receiver: Receiver) -> None:
    """A signed delivery is stored as it came under its account; the redelivery is a no-op."""
    body = delivery(media="17000000000000001")
    first = receiver.post(body, signed(body))
    before = lake_state(receiver.lake)
    second = receiver.post(body, signed(body))
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["new"], second.json()["new"]) == (1, 0)
    assert lake_state(receiver.lake) == before
    day = datetime.now(UTC).date().isoformat()
    key = receiver.lake / "Instagram/NPI/webhooks/story_insights" / day
    path = key / f"{hashlib.sha256(body).hexdigest()}.json"
    assert path.read_bytes() == body


def test_unknown_account_and_unexpected_json_are_kept(receiver: Receiver) -> None:
    """An id of no configured account, and a signed body that is not the expected JSON, are
    stored under _unknown (200, a WARNING for the second)."""
    odd = delivery(user="99999999999")
    text = b"not json at all \xff"
    assert receiver.post(odd, signed(odd)).status_code == 200
    assert receiver.post(text, signed(text)).status_code == 200
    names = {p.name for p in receiver.lake.glob("Instagram/_unknown/webhooks/*/*/*.json")}
    assert {f"{hashlib.sha256(b).hexdigest()}.json" for b in (odd, text)} <= names
    warnings = [json.loads(line) for line in receiver.stdout.read_text().splitlines() if line]
    assert any(
        e.get("severity") == "WARNING" and "not the expected" in e["message"] for e in warnings
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256=" + "z" * 64,
        "sha256=" + "0" * 64,
        "sha256=" + hmac.new(b"another-app", b"x", hashlib.sha256).hexdigest(),
    ],
)
def test_bad_signature_refused_nothing_stored(receiver: Receiver, header: str | None) -> None:
    """Absent, malformed and forged signatures: 403, and the lake does not change."""
    body = delivery(media="17000000000000002")
    headers = {} if header is None else {"X-Hub-Signature-256": header}
    before = lake_state(receiver.lake)
    answer = receiver.post(body, headers)
    assert answer.status_code == 403
    assert lake_state(receiver.lake) == before


def test_signature_of_another_secret_refused(receiver: Receiver) -> None:
    """A body signed with another app's secret is refused: 403, nothing stored."""
    body = delivery(media="17000000000000003")
    before = lake_state(receiver.lake)
    assert receiver.post(body, signed(body, "not-our-secret")).status_code == 403
    assert lake_state(receiver.lake) == before


def test_oversized_body_is_413(receiver: Receiver) -> None:
    """A body over 1 MiB is refused with 413 before anything is stored, even when signed."""
    body = b"{" + b" " * (1024 * 1024) + b"}"
    before = lake_state(receiver.lake)
    assert receiver.post(body, signed(body)).status_code == 413
    assert lake_state(receiver.lake) == before


def test_other_methods_405(receiver: Receiver) -> None:
    """PUT is not a webhook call; no log line of the receiver carries a secret."""
    assert httpx.put(receiver.url, content=b"{}", timeout=30).status_code == 405
    output = receiver.stdout.read_text()
    assert output
    assert APP_SECRET not in output
    assert VERIFY_TOKEN not in output


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300),
    header=st.one_of(
        st.none(),
        # what an HTTP client can send as a header value: printable ASCII, no edge whitespace
        st.text(max_size=80).filter(lambda t: t.isascii() and t.isprintable() and t == t.strip()),
    ),
    sign_it=st.booleans(),
)
def test_fuzzed_deliveries(
    receiver: Receiver, body: bytes, header: str | None, sign_it: bool
) -> None:
    """Any body and header: never a 5xx; stored exactly when the signature is right."""
    headers = (
        signed(body) if sign_it else ({} if header is None else {"X-Hub-Signature-256": header})
    )
    before = set(receiver.stored())
    answer = receiver.post(body, headers)
    assert answer.status_code < 500
    after = set(receiver.stored())
    if sign_it:
        assert answer.status_code == 200
        assert any(p.name == f"{hashlib.sha256(body).hexdigest()}.json" for p in after)
    else:
        assert answer.status_code == 403
        assert after == before
