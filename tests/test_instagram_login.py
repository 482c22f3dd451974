"""Both login types in one run, over real sockets: Instagram Login accounts through their own host,
`appsecret_proof` on every call, and advice for a token of the wrong kind."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import polars as pl
import pytest
from pydantic import SecretStr

from ig_story_metrics.graph.client import GraphClient, Session, appsecret_proof
from ig_story_metrics.jobs import hourly
from ig_story_metrics.model.metrics import PLAIN_METRICS
from ig_story_metrics.redact import scrub
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import load_accounts, load_settings, lookup_token
from ig_story_metrics.simulator import (
    DEFAULT_IG_TOKEN,
    DEFAULT_TOKEN,
    INSTAGRAM_PREFIX,
    SimulatorServer,
    simulator_server,
)

from .conftest import frozen, run_cli
from .tokens_support import (
    APP_ID,
    APP_SECRET,
    FB_TOKEN,
    IG_TOKEN,
    all_files,
    hosts,
    instagram_host,
    instagram_url,
    leaks,
)

ACCOUNTS = """\
[accounts.NPI]
ig_user_id = "17841400000000001"

[accounts.LT]
ig_user_id = "17841400000000002"
login = "instagram"
token_env = "IG_TOKEN_LT"
"""


def setup(
    tmp_path: Path, server: SimulatorServer, accounts: str = ACCOUNTS, **more: str
) -> dict[str, str]:
    path = tmp_path / "accounts.toml"
    path.write_text(accounts, encoding="utf-8")
    return {
        "IG_ACCESS_TOKEN": FB_TOKEN,
        "IG_TOKEN_LT": IG_TOKEN,
        "IG_ACCOUNTS_FILE": str(path),
        "IG_GRAPH_API_URL": server.url,
        "IG_INSTAGRAM_API_URL": instagram_url(server),
        "STORAGE_URL": str(tmp_path / "lake"),
        **more,
    }


def run_in_process(env: dict[str, str]) -> RunReport:
    settings = load_settings(env)
    accounts = list(load_accounts(settings.accounts_file).values())
    tokens = {a.name: lookup_token(settings, a, env) for a in accounts}
    assert all(tokens.values())
    return hourly.run(settings, accounts, tokens, clock=frozen())  # type: ignore[arg-type]


def test_instagram_login_account_is_captured_through_its_own_host(tmp_path: Path) -> None:
    """`login = "instagram"` goes to IG_INSTAGRAM_API_URL with its Instagram token; the other
    account stays on graph.facebook.com; both are stored, every call carries a valid proof, and
    neither token nor the app secret appears in the output, the logs or the lake."""
    server, identity = hosts(app_secret=APP_SECRET)
    with server:
        env = setup(tmp_path, server, IG_APP_ID=APP_ID, IG_APP_SECRET=APP_SECRET)
        result = run_cli(["run", "--all", "--json"], {**env, "LOG_FORMAT": "json"}, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {a["account"]: a["ok"] for a in report["accounts"]} == {"NPI": True, "LT": True}
    assert set(server.simulator.stats.by_account) == {"NPI"}
    assert set(instagram_host(server).stats.by_account) == {"LT"}
    assert identity.calls["proof_checked"] >= 4  # listings and batches of both hosts
    frame = pl.read_parquet(next((tmp_path / "lake" / "Instagram" / "LT").rglob("*.parquet")))
    assert frame.height == report["accounts"][1]["listed"] > 0
    assert set(frame["insights_status"]) <= {"ok", "not_enough_viewers"}
    lake = all_files(tmp_path / "lake")
    assert not leaks([FB_TOKEN, IG_TOKEN, APP_SECRET], [result.stdout, result.stderr], lake)


def test_instagram_accounts_are_not_asked_facebook_only_metrics(tmp_path: Path) -> None:
    """link_clicks is in the catalogue, yet an Instagram Login account's stories stay `ok`: the
    metric is never asked (graph.instagram.com would refuse it) and its column stays null."""
    assert "link_clicks" in PLAIN_METRICS
    server, _ = hosts()
    with server:
        report = run_in_process(setup(tmp_path, server, accounts=ACCOUNTS.split("\n\n")[1]))
    (lt,) = report.accounts
    assert lt.ok, lt.error
    assert lt.rejected_metrics == []
    assert set(lt.statuses) <= {"ok", "not_enough_viewers"}
    assert lt.problems == [] or all(p.status == "not_enough_viewers" for p in lt.problems)


def test_simulated_instagram_host_refuses_facebook_only_metrics() -> None:
    """The simulator's graph.instagram.com answers #100 for link_clicks (so a client that asks is
    caught), while its Facebook host does not check it."""
    server, identity = hosts()
    with server:
        story = identity.world.live_stories("LT")[0]
        answer = httpx.get(
            f"{instagram_url(server)}/v25.0/{story.id}/insights",
            params={"metric": "views,link_clicks"},
            headers={"Authorization": f"Bearer {IG_TOKEN}"},
        )
    assert answer.status_code == 400
    assert "link_clicks" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("accounts", "mix_up"),
    [
        (ACCOUNTS.replace('login = "instagram"\n', ""), 'add login = "instagram"'),
        (
            ACCOUNTS.replace('token_env = "IG_TOKEN_LT"', 'token_env = "IG_ACCESS_TOKEN"'),
            "is it a Facebook token",
        ),
    ],
    ids=["instagram-token-on-facebook", "facebook-token-on-instagram"],
)
def test_token_of_the_wrong_kind_gets_advice_naming_the_mix_up(
    tmp_path: Path, accounts: str, mix_up: str
) -> None:
    """Meta's 190 "Cannot parse access token" becomes advice naming the mix-up and the variable;
    the other account is captured all the same."""
    server, _ = hosts()
    with server:
        report = run_in_process(setup(tmp_path, server, accounts=accounts))
    npi, lt = report.accounts
    assert npi.ok
    assert not lt.ok
    assert lt.error is not None
    assert mix_up in lt.error
    assert ("IG_TOKEN_LT" if "IG_TOKEN_LT" in accounts else "IG_ACCESS_TOKEN") in lt.error
    assert lt.http_requests == 1


def test_simulator_refuses_calls_without_a_valid_appsecret_proof(tmp_path: Path) -> None:
    """Meta's "Require App Secret": without IG_APP_SECRET, or with the wrong one, every account
    fails; with it, every account runs."""
    server, _ = hosts(app_secret=APP_SECRET)
    with server:
        missing = run_in_process(setup(tmp_path, server))
        wrong = run_in_process(setup(tmp_path, server, IG_APP_SECRET="not-the-app-secret-123"))
        right = run_in_process(setup(tmp_path, server, IG_APP_SECRET=APP_SECRET))
    assert all(not a.ok and "appsecret_proof" in (a.error or "") for a in missing.accounts)
    assert all("Invalid appsecret_proof" in (a.error or "") for a in wrong.accounts)
    assert all(a.ok for a in right.accounts)


def test_proof_travels_in_query_or_body_and_never_with_the_token_in_a_url() -> None:
    """A GET carries appsecret_proof in its query (its own query kept), a batch in its body; no
    token in any URL."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, json=[{"code": 200, "body": '{"data": []}'}])
        return httpx.Response(200, json={"data": []})

    async def go() -> None:
        async with GraphClient(
            "http://graph.test",
            "v25.0",
            transport=httpx.MockTransport(record),
            app_secret=SecretStr(APP_SECRET),
        ) as client:
            session = Session("NPI", "1", SecretStr(FB_TOKEN))
            path = "v25.0/1/stories?limit=5"
            await client.exchange(session, lambda: client.get(session, path), lambda _: None)
            await client.batch(session, ["2/insights?metric=views"])

    asyncio.run(go())
    proof = appsecret_proof(SecretStr(FB_TOKEN), SecretStr(APP_SECRET))
    get, post = seen
    assert get.url.params["appsecret_proof"] == proof
    assert get.url.params["limit"] == "5"
    assert ("appsecret_proof", proof) in parse_qsl(post.content.decode())
    assert not any(FB_TOKEN in str(r.url) or APP_SECRET in str(r.url) for r in seen)


def test_expired_token_fails_its_account_with_advice_naming_variable_and_secret(
    tmp_path: Path,
) -> None:
    """An expired token (190/463) fails only its account, with advice naming the variable, the
    secret and `tokens refresh`; the other accounts are captured."""
    server, identity = hosts()
    expired = "EAAExpiredUserToken0123456789abcdefXYZ"
    identity.issue(expired, kind="USER", accounts=frozenset({"MD"}), expires_in=timedelta(days=-1))
    accounts = ACCOUNTS + (
        '\n[accounts.MD]\nig_user_id = "17841400000000003"\ntoken_env = "IG_TOKEN_MD"\n'
        'token_secret = "ig-token-md"\n'
    )
    with server:
        report = run_in_process(setup(tmp_path, server, accounts=accounts, IG_TOKEN_MD=expired))
    by_name = {a.account: a for a in report.accounts}
    assert by_name["NPI"].ok
    assert by_name["LT"].ok
    md = by_name["MD"]
    assert not md.ok
    assert md.error is not None
    assert md.error.startswith("token for MD expired on ")
    assert "ig-story-metrics tokens refresh MD" in md.error
    assert "IG_TOKEN_MD (secret ig-token-md)" in md.error
    assert expired not in md.error


def test_app_secret_is_masked_once_the_settings_are_read() -> None:
    """IG_APP_SECRET is registered for redaction when the settings are loaded: a message that
    echoes it (or the app token) never shows it."""
    secret = "anotherAppSecret0123456789abcdef"
    load_settings({"IG_APP_ID": APP_ID, "IG_APP_SECRET": secret})
    assert secret not in scrub(f"refused app token {APP_ID}|{secret} for this call")


def test_simulate_serves_both_hosts_on_one_port() -> None:
    """`simulator_server()` (behind `simulate` and `demo`): graph.instagram.com under /instagram
    takes the Instagram demo token and cannot parse the Facebook one, and the reverse at the root."""
    with simulator_server() as server:
        ig = f"{server.url}{INSTAGRAM_PREFIX}/v25.0/me"

        def status(url: str, token: str) -> int:
            answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
            return answer.status_code

        me = httpx.get(
            ig,
            params={"fields": "user_id,username"},
            headers={"Authorization": f"Bearer {DEFAULT_IG_TOKEN}"},
        )
        assert me.status_code == 200
        assert me.json()["user_id"].isdigit()
        assert status(ig, DEFAULT_TOKEN) == 400
        assert status(f"{server.url}/v25.0/me", DEFAULT_IG_TOKEN) == 400
        assert status(f"{server.url}/v25.0/me", DEFAULT_TOKEN) == 200
