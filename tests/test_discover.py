"""`ig-story-metrics accounts discover` over real sockets: /me/accounts paged to the end (Facebook
Login), /me (Instagram Login); the printed file loads as an accounts file and captures."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pydantic import SecretStr

from ig_story_metrics.jobs.accounts import discover
from ig_story_metrics.settings import load_accounts, load_settings
from ig_story_metrics.simulator import SEED_ACCOUNTS

from .conftest import run_cli
from .tokens_support import FB_TOKEN, IG_TOKEN, hosts, instagram_url, leaks


def env_of(server_url: str, ig_url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "IG_ACCESS_TOKEN": FB_TOKEN,
        "IG_GRAPH_API_URL": server_url,
        "IG_INSTAGRAM_API_URL": ig_url,
        "STORAGE_URL": str(tmp_path / "lake"),
        **more,
    }


def test_facebook_discovery_pages_to_the_end_and_prints_a_loadable_file(tmp_path: Path) -> None:
    """Every Page of every /me/accounts page (2 per page here) becomes an account named from its
    username, collisions numbered; the Page without Instagram is a comment; the saved output loads
    and a run over it captures every account."""
    usernames = {"NPI": "shop.one", "LT": "shop_one"}
    server, identity = hosts(usernames=usernames)
    with server:
        env = env_of(server.url, instagram_url(server), tmp_path)
        result = run_cli(["accounts", "discover"], env, tmp_path)
        assert result.returncode == 0, result.stderr
        path = tmp_path / "accounts.toml"
        path.write_text(result.stdout, encoding="utf-8")
        run = run_cli(["run", "--all", "--json"], {**env, "IG_ACCOUNTS_FILE": str(path)}, tmp_path)
    accounts = load_accounts(path)
    assert list(accounts) == ["SHOP_ONE", "SHOP_ONE_2", "MD", "RE", "SML"]
    assert [a.ig_user_id for a in accounts.values()] == list(SEED_ACCOUNTS.values())
    assert all(a.login == "facebook" and a.token_env is None for a in accounts.values())
    assert "# Page Sim Shop (no Instagram) has no Instagram professional account linked" in (
        result.stdout
    )
    assert identity.calls["me/accounts"] == 3  # 6 Pages, 2 per page
    assert run.returncode == 0, run.stderr
    assert all(a["ok"] for a in json.loads(run.stdout)["accounts"])
    assert not leaks([FB_TOKEN], [result.stdout, result.stderr])


def test_instagram_discovery_reads_me_and_names_the_token_variable(tmp_path: Path) -> None:
    """`--login instagram --token-env VAR`: one account, login and token_env written down."""
    server, identity = hosts()
    with server:
        env = env_of(server.url, instagram_url(server), tmp_path, IG_TOKEN_LT=IG_TOKEN)
        result = run_cli(
            ["accounts", "discover", "--login", "instagram", "--token-env", "IG_TOKEN_LT"],
            env,
            tmp_path,
        )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "accounts.toml"
    path.write_text(result.stdout, encoding="utf-8")
    (lt,) = load_accounts(path).values()
    assert (lt.name, lt.ig_user_id, lt.login, lt.token_env) == (
        "LT",
        SEED_ACCOUNTS["LT"],
        "instagram",
        "IG_TOKEN_LT",
    )
    assert identity.calls["me"] == 1
    assert not leaks([IG_TOKEN], [result.stdout, result.stderr])


def test_discovery_never_writes_over_an_existing_file(tmp_path: Path) -> None:
    """`--out` onto an existing file: exit 2, the file untouched, Meta not asked; a new file is
    written."""
    server, identity = hosts()
    existing = tmp_path / "accounts.toml"
    existing.write_text("# mine\n", encoding="utf-8")
    with server:
        env = env_of(server.url, instagram_url(server), tmp_path)
        refused = run_cli(["accounts", "discover", "--out", str(existing)], env, tmp_path)
        fresh = tmp_path / "found.toml"
        written = run_cli(["accounts", "discover", "--out", str(fresh)], env, tmp_path)
    assert refused.returncode == 2
    assert "never writes over an accounts file" in refused.stderr
    assert existing.read_text() == "# mine\n"
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert len(load_accounts(fresh)) == 5
    assert identity.calls["me/accounts"] == 3  # only the second command asked


def test_discovery_with_a_refused_or_missing_token_says_so_in_one_line(tmp_path: Path) -> None:
    """An Instagram token sent as a Facebook one: exit 1, Meta's reason, no token; no token at all:
    exit 2 naming the variable."""
    server, _ = hosts()
    with server:
        env = env_of(server.url, instagram_url(server), tmp_path, IG_ACCESS_TOKEN=IG_TOKEN)
        refused = run_cli(["accounts", "discover"], env, tmp_path)
        env.pop("IG_ACCESS_TOKEN")
        missing = run_cli(["accounts", "discover", "--token-env", "IG_NOPE"], env, tmp_path)
    assert refused.returncode == 1
    assert "Cannot parse access token" in refused.stderr
    assert not leaks([IG_TOKEN], [refused.stdout, refused.stderr])
    assert missing.returncode == 2
    assert "IG_NOPE is not set" in missing.stderr
    assert "Traceback" not in refused.stderr + missing.stderr


def test_hostile_pages_are_skipped_or_kept_in_comments(tmp_path: Path) -> None:
    """A Page whose Instagram id is not digits is skipped with a warning; a username or Page name
    that tries to inject TOML stays inside a name or a comment: the output still loads."""
    pages = [
        {
            "name": "Bad",
            "instagram_business_account": {"id": "1784\n[accounts.X]", "username": "x"},
        },
        {
            "name": 'Evil\n[accounts.EVIL]\nig_user_id = "9"',
            "instagram_business_account": {"id": "17841400000000007", "username": 'a"]\nb'},
        },
        {"name": "No IG\n[x]"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": pages})

    settings = load_settings({"IG_GRAPH_API_URL": "http://graph.test"})
    text, warnings = discover(settings, SecretStr(FB_TOKEN), transport=httpx.MockTransport(answer))
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    assert {n: a.ig_user_id for n, a in load_accounts(path).items()} == {"A_B": "17841400000000007"}
    assert warnings == ["Page Bad: an Instagram account without a valid id"]
