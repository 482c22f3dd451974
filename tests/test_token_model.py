"""Pure rules of accounts and tokens: login-only metrics, account names from usernames, the accounts
file keys, token verdicts, alert days and renewal."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ig_story_metrics.errors import SetupError
from ig_story_metrics.model.discovery import Found, accounts_toml, base_name, unique_names
from ig_story_metrics.model.metrics import FACEBOOK_LOGIN_ONLY, for_login, metric_requests
from ig_story_metrics.model.tokens import (
    TokenFacts,
    alert_threshold,
    display_expiry,
    due_for_refresh,
    may_refresh,
    problems,
)
from ig_story_metrics.settings import load_accounts

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ALL_SCOPES = frozenset(
    {"instagram_basic", "instagram_manage_insights", "pages_read_engagement", "pages_show_list"}
)


def test_instagram_login_calls_leave_out_facebook_only_metrics() -> None:
    """An Instagram Login account never asks link_clicks or total_views; Facebook keeps them."""
    requests = [(("views", "link_clicks", "total_views"), None), (("total_views",), None)]
    assert for_login(requests, "instagram") == [(("views",), None)]
    assert for_login(requests, "facebook") == requests
    asked = {m for metrics, _ in for_login(metric_requests(), "instagram") for m in metrics}
    assert not asked & FACEBOOK_LOGIN_ONLY


@pytest.mark.parametrize(
    ("username", "name"),
    [
        ("npi.official", "NPI_OFFICIAL"),
        ("la_tienda", "LA_TIENDA"),
        ("..__..", "IG_17841400000000009"),
        ("café.olé", "CAF_OL"),
        (None, "IG_17841400000000009"),
        ("x" * 80, "X" * 64),
    ],
)
def test_names_come_from_usernames_upper_case_and_path_safe(
    username: str | None, name: str
) -> None:
    """A username becomes an upper-case name of [A-Za-z0-9_-], at most 64 characters."""
    assert base_name(Found("17841400000000009", username)) == name


def test_colliding_names_get_a_number() -> None:
    """Two usernames that make the same name (or one already taken) get _2, _3."""
    found = [Found("1", "n.p.i"), Found("2", "n_p_i"), Found("3", "N-P-I"), Found("4", "n..p..i")]
    assert unique_names(found) == ["N_P_I", "N_P_I_2", "N-P-I", "N_P_I_3"]
    assert unique_names([Found("5", "x" * 70)], taken=["X" * 64]) == ["X" * 62 + "_2"]


def test_printed_accounts_file_loads_and_keeps_hostile_names_in_comments(tmp_path: Path) -> None:
    """The printed file loads as an accounts file; a page name with a newline stays a comment."""
    text = accounts_toml(
        [Found("17841400000000001", "npi", 'NPI Page\n[accounts.EVIL]\nig_user_id = "6"')],
        login="instagram",
        token_env="IG_TOKEN_IG",
        pages_without_instagram=["Shop\nwith = 'x'"],
    )
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    accounts = load_accounts(path)
    assert list(accounts) == ["NPI"]
    assert accounts["NPI"].login == "instagram"
    assert accounts["NPI"].token_env == "IG_TOKEN_IG"
    assert set(tomllib.loads(text)) == {"accounts"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('login = "myspace"', "login must be one of"),
        ("login = 3", "login must be one of"),
        ('token_secret = "a b"', "token_secret must be"),
        ('token_secret = "projects/p/secrets/s/versions/1"', "token_secret must be"),
    ],
)
def test_accounts_file_refuses_bad_login_and_secret(
    tmp_path: Path, entry: str, message: str
) -> None:
    """`login` is facebook or instagram; `token_secret` a secret id or projects/P/secrets/S."""
    path = tmp_path / "accounts.toml"
    path.write_text(f'[accounts.NPI]\nig_user_id = "1"\n{entry}\n', encoding="utf-8")
    with pytest.raises(SetupError, match=message):
        load_accounts(path)


def test_accounts_file_takes_login_and_token_secret(tmp_path: Path) -> None:
    """The two new keys are read; without them an account is Facebook Login with no secret."""
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[accounts.A]\nig_user_id = "1"\nlogin = "instagram"\n'
        'token_secret = "projects/p-1/secrets/ig-token-a"\n[accounts.B]\nig_user_id = "2"\n',
        encoding="utf-8",
    )
    accounts = load_accounts(path)
    assert (accounts["A"].login, accounts["A"].token_secret) == (
        "instagram",
        "projects/p-1/secrets/ig-token-a",
    )
    assert (accounts["B"].login, accounts["B"].token_secret) == ("facebook", None)


def facts(**kw: object) -> TokenFacts:
    base: dict[str, object] = {
        "valid": True,
        "kind": "USER",
        "expires_at": NOW + timedelta(days=50),
        "data_access_expires_at": NOW + timedelta(days=80),
        "scopes": ALL_SCOPES,
    }
    base.update(kw)
    return TokenFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "found"),
    [
        (facts(), []),
        (facts(valid=False, error="Session has expired"), ["invalid: Session has expired"]),
        (facts(scopes=ALL_SCOPES - {"instagram_manage_insights"}), ["missing permission"]),
        (facts(expires_at=NOW + timedelta(days=5)), ["token expires on 2026-11-29"]),
        (facts(expires_at=NOW + timedelta(days=8)), []),
        (facts(data_access_expires_at=NOW + timedelta(days=6)), ["data access expires"]),
        (facts(never_expires=True, expires_at=None, kind="PAGE"), []),
        (facts(expires_at=NOW - timedelta(hours=1)), ["token expired on"]),
    ],
)
def test_problems_are_invalid_missing_permission_or_expiry_within_7_days(
    token: TokenFacts, found: list[str]
) -> None:
    """What fails `tokens check`: invalid, a missing permission, either date within 7 days."""
    got = problems(token, "facebook", NOW)
    assert len(got) == len(found)
    for message, start in zip(got, found, strict=True):
        assert message.startswith(start), message


def test_instagram_tokens_need_the_instagram_permissions() -> None:
    """Instagram Login tokens are held to instagram_business_* permissions, not Facebook's."""
    token = facts(scopes=frozenset({"instagram_business_basic"}))
    assert problems(token, "instagram", NOW) == [
        "missing permission(s): instagram_business_manage_insights"
    ]
    assert problems(facts(scopes=None), "instagram", NOW) == []


@pytest.mark.parametrize(
    ("days", "threshold"),
    [(20, None), (14.5, 14), (14.0, 14), (13.9, None), (7.2, 7), (6.5, None), (1.5, 1), (0.2, 1)],
)
def test_alerts_fire_at_14_7_and_1_days(days: float, threshold: int | None) -> None:
    """A daily check warns once at 14 and 7 whole days left, and every day from 1 day left."""
    assert alert_threshold(NOW + timedelta(days=days), NOW) == threshold


def test_what_may_be_renewed() -> None:
    """Instagram and expiring user or system-user tokens may be renewed; page or never: not."""
    assert may_refresh(facts(), "facebook")
    assert may_refresh(facts(kind="SYSTEM_USER"), "facebook")
    assert not may_refresh(facts(kind="PAGE"), "facebook")
    assert not may_refresh(facts(never_expires=True, expires_at=None), "facebook")
    assert may_refresh(facts(kind="INSTAGRAM", scopes=None), "instagram")
    assert not due_for_refresh(facts(), "facebook", NOW)
    assert due_for_refresh(facts(expires_at=NOW + timedelta(days=9)), "facebook", NOW)
    assert not due_for_refresh(facts(expires_at=None, kind="INSTAGRAM"), "instagram", NOW)


def test_expiry_is_shown_as_never_unknown_or_a_date() -> None:
    """`never` for page/system tokens, `unknown` when Meta does not say, `~` for estimates."""
    assert display_expiry(facts(never_expires=True, expires_at=None)) == "never"
    assert display_expiry(facts(expires_at=None)) == "unknown"
    assert display_expiry(facts(expiry_estimated=True)) == "~2027-01-13 12:00 UTC"
