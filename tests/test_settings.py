"""Settings as a user gives them: `.env` serves every variable, a missing token costs one account,
and every bad setting is refused at start with one line and exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ig_story_metrics.errors import SetupError
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.settings import load_accounts, prepare_run
from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer

from .conftest import SECRET_TOKEN, env_for, run_cli, write_accounts


def refused(result_stderr: str, returncode: int, expected: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert returncode == 2, result_stderr
    assert expected in result_stderr
    assert "Traceback" not in result_stderr
    assert len(result_stderr.strip().splitlines()) == 1, result_stderr


def test_a_token_variable_set_only_in_dotenv_is_found(sim: SimulatorServer, tmp_path: Path) -> None:
    """`token_env = "IG_TOKEN_RE"` with IG_TOKEN_RE only in `.env`: RE runs and is stored."""
    accounts = write_accounts(
        tmp_path / "accounts.toml", {"RE": SEED_ACCOUNTS["RE"]}, RE="IG_TOKEN_RE"
    )
    (tmp_path / ".env").write_text(f"IG_TOKEN_RE={SECRET_TOKEN}\n", encoding="utf-8")
    env = env_for(sim, tmp_path, accounts)
    del env["IG_ACCESS_TOKEN"]
    result = run_cli(["run", "RE", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accounts"][0]["stored_rows"] > 0
    assert (tmp_path / "lake/Instagram/RE").is_dir()


def test_the_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable in both the environment and `.env` takes the environment's value."""
    accounts = write_accounts(
        tmp_path / "accounts.toml", {"RE": SEED_ACCOUNTS["RE"]}, RE="IG_TOKEN_RE"
    )
    (tmp_path / ".env").write_text(
        f"IG_TOKEN_RE=from-dotenv-token\nIG_ACCOUNTS_FILE={accounts}\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IG_TOKEN_RE", SECRET_TOKEN)
    config = prepare_run(["RE"], all_accounts=False)
    assert config.tokens["RE"].get_secret_value() == SECRET_TOKEN


def test_a_missing_token_fails_that_account_only(sim: SimulatorServer, tmp_path: Path) -> None:
    """RE's IG_TOKEN_RE is set nowhere: RE fails naming it, without a call to Meta; NPI is stored."""
    names = {n: SEED_ACCOUNTS[n] for n in ("NPI", "RE")}
    accounts = write_accounts(tmp_path / "accounts.toml", names, RE="IG_TOKEN_RE")
    result = run_cli(["run", "--all", "--json"], env_for(sim, tmp_path, accounts), tmp_path)
    assert result.returncode == 1, result.stderr
    report = {a["account"]: a for a in json.loads(result.stdout)["accounts"]}
    assert report["NPI"]["ok"]
    assert report["NPI"]["stored_rows"] > 0
    assert not report["RE"]["ok"]
    assert "set IG_TOKEN_RE" in report["RE"]["error"]
    assert report["RE"]["http_requests"] == 0
    assert sim.simulator.stats.by_account["RE"] == 0
    assert sim.simulator.stats.by_account["NPI"] > 0


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("EAAfirst\nEAAsecond", "holds a line break"),
        ("EAAtokén0123456789", "holds a non-ASCII character"),
        ("EAAtoken with space", "holds whitespace"),
        ("EAAtoken\tTAB0123", "holds whitespace"),
        ('EAA"quoted"token', "holds a quote"),
    ],
)
@pytest.mark.parametrize("variable", ["IG_ACCESS_TOKEN", "IG_TOKEN_RE"])
def test_a_malformed_token_is_refused_at_start_naming_its_variable(
    tmp_path: Path, token: str, expected: str, variable: str
) -> None:
    """A token with a line break, a non-ASCII character or whitespace inside is a configuration
    error naming its variable (from the environment or `.env`), never showing the token."""
    accounts = write_accounts(tmp_path / "accounts.toml", {"RE": SEED_ACCOUNTS["RE"]}, RE=variable)
    env = {"IG_ACCOUNTS_FILE": str(accounts), "IG_ACCESS_TOKEN": SECRET_TOKEN, variable: token}
    with pytest.raises(SetupError) as error:
        prepare_run(["RE"], all_accounts=False, env=env)
    message = str(error.value)
    assert variable in message
    assert expected in message
    assert "\n" not in message
    assert token not in message


def test_a_malformed_token_in_dotenv_is_exit_2_on_one_line(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    """The CLI refuses a token with a line break inside (quoted in `.env`): one line, exit 2."""
    accounts = write_accounts(
        tmp_path / "accounts.toml", {"RE": SEED_ACCOUNTS["RE"]}, RE="IG_TOKEN_RE"
    )
    (tmp_path / ".env").write_text('IG_TOKEN_RE="EAAfirst\nEAAsecond"\n', encoding="utf-8")
    result = run_cli(["run", "RE"], env_for(sim, tmp_path, accounts), tmp_path)
    refused(
        result.stderr, result.returncode, "IG_TOKEN_RE (the token of account RE) holds a line break"
    )
    assert "EAAsecond" not in result.stdout + result.stderr
    assert not (tmp_path / "lake").exists()


BAD_URLS = [
    ("ftp://graph.example.com", "http:// or https://"),
    ("graph.facebook.com", "http:// or https://"),
    ("http://", "no valid host"),
    ("http://graph example.com", "without spaces"),
    ("https://graph.facebook.com\n", "without spaces"),
    ("http://127.0.0.1:99999", "invalid port"),
    ("http://127.0.0.1:0", "invalid port"),
    ("http://127.0.0.1:port", "invalid port"),
    ("http://-bad-.example.com", "no valid host"),
    ("http://user:pw@127.0.0.1:8080", "credentials"),
    ("https://graph.facebook.com/?x=1", "query"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_URLS)
def test_graph_api_url_must_be_an_http_url_with_a_valid_host_and_port(
    tmp_path: Path, url: str, expected: str
) -> None:
    """IG_GRAPH_API_URL that is not http(s)://host[:port][/path]: one line naming the setting."""
    accounts = write_accounts(tmp_path / "accounts.toml")
    env = {"IG_ACCOUNTS_FILE": str(accounts), "IG_GRAPH_API_URL": url}
    with pytest.raises(SetupError) as error:
        prepare_run([], all_accounts=True, env=env)
    assert "IG_GRAPH_API_URL" in str(error.value)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "https://graph.facebook.com", "http://[::1]:80/prefix/"]
)
def test_good_graph_api_urls_are_accepted(tmp_path: Path, url: str) -> None:
    """Host names, IPv4 and IPv6 addresses, ports and a path prefix are fine."""
    accounts = write_accounts(tmp_path / "accounts.toml")
    env = {"IG_ACCOUNTS_FILE": str(accounts), "IG_GRAPH_API_URL": url}
    assert prepare_run([], all_accounts=True, env=env).settings.graph_api_url == url


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[accounts."NPI\\n"]\nig_user_id = "1"\n', "names may only use"),
        (f'[accounts.{"N" * 65}]\nig_user_id = "1"\n', "at most 64 characters"),
        ('[accounts.NPI]\nig_user_id = "17841400000000001\\n"\n', "string of digits"),
        ('[accounts.NPI]\nig_user_id = " 17841400000000001"\n', "string of digits"),
        (
            '[accounts.NPI]\nig_user_id = "1"\n[accounts.LT]\nig_user_id = "1"\n',
            "accounts NPI and LT have the same ig_user_id 1",
        ),
    ],
)
def test_accounts_file_mistakes_are_one_line(tmp_path: Path, toml: str, expected: str) -> None:
    """A name with a line break or over 64 characters, an id that is not only digits, two
    accounts with one id (it would be captured twice, under two names): one line each."""
    path = tmp_path / "accounts.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(SetupError) as error:
        load_accounts(path)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("name", "ig_user_id"), [("NPI", "1784\n"), ("NPI\n", "1"), ("N" * 65, "1")]
)
def test_an_account_refuses_a_bad_name_or_id_wherever_it_is_made(
    name: str, ig_user_id: str
) -> None:
    """`Account` itself refuses a name or ig_user_id that the accounts file would (library use)."""
    with pytest.raises(ValueError, match="account"):
        Account(name, ig_user_id)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("url", "invalid setting IG_GRAPH_API_URL"),
        ("dotenv", ".env is not valid UTF-8 (byte 0xff on line 2)"),
        ("ig_user_id", "ig_user_id must be a string of digits"),
        ("duplicate", "have the same ig_user_id"),
        ("name", "at most 64 characters"),
    ],
)
def test_bad_settings_are_exit_2_on_one_line(
    sim: SimulatorServer, tmp_path: Path, case: str, expected: str
) -> None:
    """The CLI refuses each kind of bad setting with one line and exit code 2; nothing is written."""
    accounts = write_accounts(tmp_path / "accounts.toml")
    env = env_for(sim, tmp_path, accounts)
    if case == "url":
        env["IG_GRAPH_API_URL"] = "http://127.0.0.1:99999"
    elif case == "dotenv":
        (tmp_path / ".env").write_bytes(b"# a comment\nIG_ACCESS_TOKEN=EAA\xffbroken\n")
    elif case == "ig_user_id":
        accounts.write_text('[accounts.NPI]\nig_user_id = "178\\n"\n', encoding="utf-8")
    elif case == "duplicate":
        accounts.write_text('[accounts.NPI]\nig_user_id = "1"\n[accounts.LT]\nig_user_id = "1"\n')
    else:
        accounts.write_text(f'[accounts.{"N" * 65}]\nig_user_id = "1"\n', encoding="utf-8")
    result = run_cli(["run", "--all"], env, tmp_path)
    refused(result.stderr, result.returncode, expected)
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--port", "70000"), ("--port", "-1"), ("--transient-rate", "1.5"), ("--slow-seconds", "-3")],
)
def test_simulate_refuses_options_out_of_range(tmp_path: Path, option: str, value: str) -> None:
    """`simulate` with a port or a fault option out of range: exit 2, the option named, no traceback."""
    result = run_cli(["simulate", option, value], {}, tmp_path)
    assert result.returncode == 2
    assert option in result.stderr
    assert "Traceback" not in result.stderr
    assert "simulator on" not in result.stdout  # nothing was served
