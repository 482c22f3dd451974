"""The Cloud Function's daily `{"mode": "tokens"}`, through functions-framework on a real port:
token health as the answer, renewal into Secret Manager (its REST API faked on loopback: the one
mock), and the log entries a log-based alert watches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from ig_story_metrics.simulator import Identity, SimulatorServer

from .secret_manager_fake import FakeSecretManager
from .test_function import Function, serve_function
from .test_tokens import PROJECT, USER_TOKEN, live_clock
from .tokens_support import APP_ID, APP_SECRET, FB_TOKEN, hosts, instagram_url, leaks

WEEK_TOKEN = "EAAUserTokenSevenAndAHalfDays0123456789abc"
ACCOUNTS = """\
[accounts.NPI]
ig_user_id = "17841400000000001"

[accounts.MD]
ig_user_id = "17841400000000003"
token_env = "IG_TOKEN_MD"
token_secret = "ig-token-md"

[accounts.RE]
ig_user_id = "17841400000000004"
token_env = "IG_TOKEN_RE"
"""


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Function, Identity, FakeSecretManager, SimulatorServer]]:
    """One function server: NPI never expires, MD expires in 5 days (and names its secret), RE
    expires in 7.5 days (no secret: it cannot be renewed)."""
    workdir = tmp_path_factory.mktemp("function-tokens")
    (workdir / "accounts.toml").write_text(ACCOUNTS, encoding="utf-8")
    server, identity = hosts(clock=live_clock, app_secret=APP_SECRET)
    identity.issue(
        USER_TOKEN, kind="USER", accounts=frozenset({"MD"}), expires_in=timedelta(days=5)
    )
    identity.issue(
        WEEK_TOKEN, kind="USER", accounts=frozenset({"RE"}), expires_in=timedelta(days=7.5)
    )
    with server, FakeSecretManager() as secrets:
        secrets.create(f"projects/{PROJECT}/secrets/ig-token-md")
        env = {
            "IG_ACCESS_TOKEN": FB_TOKEN,
            "IG_TOKEN_MD": USER_TOKEN,
            "IG_TOKEN_RE": WEEK_TOKEN,
            "IG_ACCOUNTS_FILE": str(workdir / "accounts.toml"),
            "IG_GRAPH_API_URL": server.url,
            "IG_INSTAGRAM_API_URL": instagram_url(server),
            "IG_APP_ID": APP_ID,
            "IG_APP_SECRET": APP_SECRET,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "SECRET_MANAGER_EMULATOR_HOST": secrets.host,
            "STORAGE_URL": str(workdir / "lake"),
            "LOG_EXECUTION_ID": "true",
        }
        with serve_function(env, workdir) as fn:
            yield fn, identity, secrets, server


def test_tokens_mode_renews_what_is_due_and_logs_for_the_alert(
    setup: tuple[Function, Identity, FakeSecretManager, SimulatorServer],
) -> None:
    """`{"mode": "tokens"}`: MD's 5-day token is renewed into its secret (200: every token
    passes afterwards); RE's 7.5-day token is logged as `token_expiring` with alert=true (the
    7-day alert) and its renewal failure as an ERROR; no token in the answer or the logs."""
    fn, identity, secrets, _ = setup
    response = fn.post(b'{"mode": "tokens"}')
    assert response.status_code == 200, response.text
    report = response.json()
    by_variable = {t["variables"][0]: t for t in report["tokens"]}
    assert by_variable["IG_TOKEN_MD"]["renewed"] == [
        f"projects/{PROJECT}/secrets/ig-token-md/versions/1"
    ]
    new = secrets.latest(f"projects/{PROJECT}/secrets/ig-token-md").decode()
    assert identity.tokens[new].kind == "USER"
    entries = [e for e in fn.entries() if e.get("logger") == "ig_story_metrics.tokens"]
    events = {(e["event"], tuple(e.get("variables", ()))): e for e in entries}
    expiring = events[("token_expiring", ("IG_TOKEN_RE",))]
    assert (expiring["severity"], expiring["days_left"], expiring["alert"]) == ("WARNING", 7, True)
    assert events[("token_renew_failed", ("IG_TOKEN_RE",))]["severity"] == "ERROR"
    assert events[("token_renewed", ("IG_TOKEN_MD",))]["severity"] == "INFO"
    assert ("token_expiring", ("IG_TOKEN_MD",)) not in events
    assert events[("tokens_summary", ())]["severity"] == "INFO"
    assert not leaks(
        [FB_TOKEN, USER_TOKEN, WEEK_TOKEN, new, APP_SECRET], [response.text, fn.output()]
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"mode": "nap"}', "unknown mode 'nap'"),
        (b'{"mode": 3}', "unknown mode 3"),
        (b'{"mode": "tokens", "accounts": ["NPI"]}', "takes no other key"),
    ],
)
def test_unknown_mode_or_extra_keys_are_refused(
    setup: tuple[Function, Identity, FakeSecretManager, SimulatorServer], body: bytes, message: str
) -> None:
    """A mode the function does not know, or a mode with other keys: 400, nothing runs."""
    fn, identity, _, server = setup
    before = (server.simulator.stats.http_requests, sum(identity.calls.values()))
    response = fn.post(body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert (server.simulator.stats.http_requests, sum(identity.calls.values())) == before
    assert json.loads(response.text)
