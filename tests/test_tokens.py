"""`tokens check` and `tokens refresh` over real sockets: the simulator's debug_token, /me,
refresh_access_token and oauth/access_token, and Secret Manager's REST API faked on loopback (the
one mock: Google ships no emulator) behind the real google-cloud-secret-manager client."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from ig_story_metrics.errors import SetupError
from ig_story_metrics.graph.client import GraphClient
from ig_story_metrics.graph.tokens import app_token, debug_tokens, exchange_facebook
from ig_story_metrics.jobs import renew, tokens
from ig_story_metrics.settings import load_accounts, load_settings
from ig_story_metrics.simulator import Identity, SimulatorServer

from .conftest import run_cli
from .secret_manager_fake import FakeSecretManager
from .tokens_support import (
    APP_ID,
    APP_SECRET,
    FB_TOKEN,
    IG_TOKEN,
    hosts,
    instagram_url,
    leaks,
)

USER_TOKEN = "EAAUserTokenExpiringSoon0123456789abcdefXYZ"
PROJECT = "demo-project"
ACCOUNTS = """\
[accounts.NPI]
ig_user_id = "17841400000000001"

[accounts.MD]
ig_user_id = "17841400000000003"
token_env = "IG_TOKEN_MD"
token_secret = "ig-token-md"

[accounts.LT]
ig_user_id = "17841400000000002"
login = "instagram"
token_env = "IG_TOKEN_LT"
token_secret = "ig-token-lt"
"""


def live_clock() -> datetime:
    """The CLI reads the real clock: the simulator's token dates follow it too."""
    return datetime.now(UTC)


@pytest.fixture
def meta() -> Iterator[tuple[SimulatorServer, Identity]]:
    """Both hosts on the real clock: NPI on a never-expiring system-user token, MD on a user
    token that expires in 5 days, LT on an Instagram token."""
    server, identity = hosts(clock=live_clock, app_secret=APP_SECRET)
    identity.issue(
        USER_TOKEN, kind="USER", accounts=frozenset({"MD"}), expires_in=timedelta(days=5)
    )
    with server:
        yield server, identity


@pytest.fixture
def secrets() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        fake.create(f"projects/{PROJECT}/secrets/ig-token-md")
        fake.create(f"projects/{PROJECT}/secrets/ig-token-lt")
        yield fake


def environment(
    tmp_path: Path, server: SimulatorServer, fake: FakeSecretManager | None = None, **more: str
) -> dict[str, str]:
    path = tmp_path / "accounts.toml"
    path.write_text(more.pop("accounts", ACCOUNTS), encoding="utf-8")
    env = {
        "IG_ACCESS_TOKEN": FB_TOKEN,
        "IG_TOKEN_MD": USER_TOKEN,
        "IG_TOKEN_LT": IG_TOKEN,
        "IG_ACCOUNTS_FILE": str(path),
        "IG_GRAPH_API_URL": server.url,
        "IG_INSTAGRAM_API_URL": instagram_url(server),
        "IG_APP_ID": APP_ID,
        "IG_APP_SECRET": APP_SECRET,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "LOG_FORMAT": "json",
    }
    if fake is not None:
        env["SECRET_MANAGER_EMULATOR_HOST"] = fake.host
    env.update(more)
    return env


SECRETS = [FB_TOKEN, USER_TOKEN, IG_TOKEN, APP_SECRET]


def test_token_expiring_in_5_days_fails_the_check_and_logs_the_warning(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """`tokens check --json`: exit 1, the 5-day token named by its variable with its date, a
    WARNING `token_expiring` entry; the page of a never-expiring token says so; no secret shown."""
    server, identity = meta
    result = run_cli(["tokens", "check", "--json"], environment(tmp_path, server), tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_variable = {t["variables"][0]: t for t in report["tokens"]}
    assert set(by_variable) == {"IG_ACCESS_TOKEN", "IG_TOKEN_MD", "IG_TOKEN_LT"}
    md = by_variable["IG_TOKEN_MD"]
    assert md["accounts"] == ["MD"]
    assert md["kind"] == "USER"
    assert md["ok"] is False
    assert md["problems"][0].startswith("token expires on ")
    assert by_variable["IG_ACCESS_TOKEN"]["expires_at"] == "never"
    assert by_variable["IG_ACCESS_TOKEN"]["ok"] is True
    assert by_variable["IG_TOKEN_LT"]["valid"] is True
    assert by_variable["IG_TOKEN_LT"]["owner"] == "@lt (17841400000000002)"
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    expiring = [e for e in entries if e.get("event") == "token_expiring"]
    assert [(e["severity"], e["variables"], e["days_left"]) for e in expiring] == [
        ("WARNING", ["IG_TOKEN_MD"], 4)
    ]
    assert identity.calls["debug_token"] == 2
    assert server.simulator.stats.batches == 1  # both Facebook tokens in one batch POST
    assert not leaks(SECRETS, [result.stdout, result.stderr])


def test_invalid_token_missing_permission_and_missing_variable_fail_the_check(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """An unknown token is invalid, a token without instagram_manage_insights lacks it, an unset
    variable is named with what to do; each fails alone (exit 1)."""
    server, identity = meta
    weak = identity.issue(
        "EAAWeakToken0123456789abcdef0123456789",
        kind="USER",
        expires_in=timedelta(days=40),
        scopes=("instagram_basic", "pages_read_engagement"),
    )
    env = environment(tmp_path, server, IG_TOKEN_MD=weak)
    env.pop("IG_TOKEN_LT")
    env["IG_ACCESS_TOKEN"] = "EAAUnknownToken0123456789abcdef0123456"
    settings = load_settings(env)
    report = tokens.check(settings, list(load_accounts(settings.accounts_file).values()), env=env)
    by_variable = {t.variables[0]: t for t in report.tokens}
    assert report.exit_code == 1
    assert by_variable["IG_ACCESS_TOKEN"].valid is False
    assert by_variable["IG_ACCESS_TOKEN"].problems[0].startswith("invalid: ")
    assert by_variable["IG_TOKEN_MD"].missing_permissions == ["instagram_manage_insights"]
    assert "IG_TOKEN_LT, which is not set" in by_variable["IG_TOKEN_LT"].problems[0]


def test_check_without_the_app_is_a_one_line_usage_error(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """Facebook tokens need IG_APP_ID and IG_APP_SECRET for debug_token: exit 2, one line."""
    server, _ = meta
    env = environment(tmp_path, server)
    del env["IG_APP_SECRET"]
    result = run_cli(["tokens", "check"], env, tmp_path)
    assert result.returncode == 2
    assert "set IG_APP_ID and IG_APP_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_refresh_stores_the_new_instagram_token_as_a_new_secret_version(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity], secrets: FakeSecretManager
) -> None:
    """`tokens refresh LT` renews the Instagram token (refresh_access_token) and writes it as a
    new version of its secret through the real client; the new token works; nothing is printed."""
    server, identity = meta
    result = run_cli(["tokens", "refresh", "LT"], environment(tmp_path, server, secrets), tmp_path)
    assert result.returncode == 0, result.stderr
    secret = f"projects/{PROJECT}/secrets/ig-token-lt"
    assert f"stored as {secret}/versions/1" in result.stderr
    new = secrets.latest(secret).decode()
    assert new != IG_TOKEN
    assert identity.tokens[new].kind == "INSTAGRAM"
    assert identity.calls["refresh_access_token"] == 1
    assert result.stdout == ""
    assert not leaks([*SECRETS, new], [result.stdout, result.stderr])
    me = httpx.get(f"{instagram_url(server)}/v25.0/me", headers={"Authorization": f"Bearer {new}"})
    assert me.status_code == 400  # the proof is required: the new token is known and checked
    assert "appsecret_proof" in me.json()["error"]["message"]


def test_refresh_exchanges_a_facebook_user_token(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity], secrets: FakeSecretManager
) -> None:
    """A long-lived user token is renewed with fb_exchange_token (app id and secret in a POST
    body) and stored; Meta now says it lasts 60 days."""
    server, identity = meta
    env = environment(tmp_path, server, secrets)
    settings = load_settings(env)
    md = load_accounts(settings.accounts_file)["MD"]
    done = renew.refresh(settings, md, env=env)
    assert done.renewed
    assert done.token is None
    new = secrets.latest(f"projects/{PROJECT}/secrets/ig-token-md").decode()
    info = identity.tokens[new]
    assert info.kind == "USER"
    assert info.expires_at is not None
    assert info.expires_at - live_clock() > timedelta(days=59)
    assert identity.calls["oauth/access_token"] == 1


def test_refresh_of_a_token_that_never_expires_does_nothing(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity], secrets: FakeSecretManager
) -> None:
    """A system-user (or page) token that never expires: said so, no renewal, no version."""
    server, identity = meta
    accounts = ACCOUNTS.replace('token_env = "IG_TOKEN_MD"\n', "")
    env = environment(tmp_path, server, secrets, accounts=accounts)
    result = run_cli(["tokens", "refresh", "MD"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "never expires: nothing to renew" in result.stderr
    assert secrets.versions[f"projects/{PROJECT}/secrets/ig-token-md"] == []
    assert identity.calls["oauth/access_token"] == 0


def test_refresh_with_nowhere_to_put_the_token_asks_meta_nothing(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """No token_secret and no --print: exit 2 before any renewal; --print into a pipe: exit 2."""
    server, identity = meta
    env = environment(
        tmp_path, server, accounts=ACCOUNTS.replace('token_secret = "ig-token-lt"\n', "")
    )
    result = run_cli(["tokens", "refresh", "LT"], env, tmp_path)
    assert result.returncode == 2
    assert "names no token_secret" in result.stderr
    piped = run_cli(["tokens", "refresh", "LT", "--print"], env, tmp_path)
    assert piped.returncode == 2
    assert "only on a terminal" in piped.stderr
    assert identity.calls["refresh_access_token"] == 0


def test_refresh_print_shows_the_new_token_on_a_terminal(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """`--print` on a terminal (a pseudo-terminal here) shows the new token, and only that."""
    server, identity = meta
    env = environment(
        tmp_path, server, accounts=ACCOUNTS.replace('token_secret = "ig-token-lt"\n', "")
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IG_", "STORAGE_"))}
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ig_story_metrics", "tokens", "refresh", "LT", "--print"],
            env={**base, **env},
            cwd=tmp_path,
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.close(follower)
        shown = b""
        while chunk := _read(leader):
            shown += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    (new,) = [t for t in identity.tokens if t.startswith("IGAA") and t != IG_TOKEN]
    assert shown.decode().strip() == new


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the terminal closed
        return b""


def test_daily_run_renews_due_tokens_into_their_secrets(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity], secrets: FakeSecretManager
) -> None:
    """With renew (the function's daily mode): the 5-day user token is exchanged, the Instagram
    token whose secret was stored 55 days ago is refreshed, the never-expiring one is left alone;
    afterwards every token passes."""
    server, identity = meta
    stored = live_clock() - timedelta(days=55)
    secrets.create(f"projects/{PROJECT}/secrets/ig-token-lt", (IG_TOKEN.encode(), stored))
    env = environment(tmp_path, server, secrets)
    settings = load_settings(env)
    report = tokens.check(
        settings, list(load_accounts(settings.accounts_file).values()), env=env, renew=True
    )
    by_variable = {t.variables[0]: t for t in report.tokens}
    assert by_variable["IG_TOKEN_MD"].renewed == [
        f"projects/{PROJECT}/secrets/ig-token-md/versions/1"
    ]
    assert by_variable["IG_TOKEN_LT"].renewed == [
        f"projects/{PROJECT}/secrets/ig-token-lt/versions/2"
    ]
    assert by_variable["IG_ACCESS_TOKEN"].renewed == []
    assert report.ok, [t.problems for t in report.tokens]
    assert (identity.calls["oauth/access_token"], identity.calls["refresh_access_token"]) == (1, 1)


def test_instagram_expiry_is_estimated_from_the_secret_and_not_renewed_early(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity], secrets: FakeSecretManager
) -> None:
    """An Instagram token stored 30 days ago expires ~30 days from now: not due, not renewed."""
    server, identity = meta
    stored = live_clock() - timedelta(days=30)
    secrets.create(f"projects/{PROJECT}/secrets/ig-token-lt", (IG_TOKEN.encode(), stored))
    env = environment(tmp_path, server, secrets, accounts=ACCOUNTS.split("\n\n")[2])
    settings = load_settings(env)
    report = tokens.check(
        settings, list(load_accounts(settings.accounts_file).values()), env=env, renew=True
    )
    (lt,) = report.tokens
    assert lt.expires_at.startswith("~")
    assert 29.9 < lt.deadlines[0].days_left < 30.1
    assert lt.renewed == []
    assert identity.calls["refresh_access_token"] == 0


def test_no_token_or_app_secret_in_any_url() -> None:
    """debug_token, the exchange and the refresh put the inspected token, the app token and the
    app secret in a POST body or a header, never in a URL."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/oauth/access_token"):
            return httpx.Response(200, json={"access_token": "EAAnew0123456789", "expires_in": 9})
        data = {"data": {"is_valid": True, "expires_at": 0, "scopes": []}}
        return httpx.Response(200, json=[{"code": 200, "body": json.dumps(data)}])

    async def go() -> None:
        async with GraphClient(
            "http://graph.test", "v25.0", transport=httpx.MockTransport(answer)
        ) as client:
            app = app_token(APP_ID, SecretStr(APP_SECRET))
            await debug_tokens(client, app, [SecretStr(USER_TOKEN)])
            await exchange_facebook(client, APP_ID, SecretStr(APP_SECRET), SecretStr(USER_TOKEN))

    asyncio.run(go())
    assert len(seen) == 2
    assert not leaks([USER_TOKEN, APP_SECRET], [str(r.url) for r in seen])
    assert all(r.method == "POST" for r in seen)


def test_unknown_account_for_refresh_is_a_usage_error(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """`tokens refresh NOPE`: exit 2 naming the known accounts."""
    server, _ = meta
    result = run_cli(["tokens", "refresh", "NOPE"], environment(tmp_path, server), tmp_path)
    assert result.returncode == 2
    assert "unknown account 'NOPE'" in result.stderr


def test_facebook_check_needs_the_app(
    tmp_path: Path, meta: tuple[SimulatorServer, Identity]
) -> None:
    """In-process too, missing app credentials are a SetupError, not a crash."""
    server, _ = meta
    env = environment(tmp_path, server)
    del env["IG_APP_ID"]
    settings = load_settings(env)
    with pytest.raises(SetupError, match="IG_APP_ID"):
        tokens.check(settings, list(load_accounts(settings.accounts_file).values()), env=env)
