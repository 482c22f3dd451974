"""The Cloud Function against hostile bodies and a hostile Graph API, served by functions-framework:
400 for bodies it cannot read, valid JSON whatever an error text holds, 502 for a failed account."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import SECRET_TOKEN
from .hostile import HostileGraph, HostileStory, bad_gzip, graph_error
from .test_function import Function, lake_state, serve_function

ACCOUNTS = {"GOOD": "2001", "GZIP": "2002", "ALLERR": "2003", "FEW": "2004", "SURR": "2005"}
UNKNOWN_ERROR = (500, graph_error("An unknown error occurred", 1))
NOT_ENOUGH_VIEWERS = (
    400,
    graph_error("(#10) Not enough viewers for the media to show insights", 10),
)
BUGGY_SOURCE = """
import ig_story_metrics.jobs.capture as capture

real = capture.list_stories


async def buggy(client, session):
    if session.account == "SURR":
        raise ZeroDivisionError("a bug in our code")
    return await real(client, session)


capture.list_stories = buggy
from ig_story_metrics.functions import fetch_story_metrics  # noqa: E402
"""


@pytest.fixture(scope="module")
def graph() -> Iterator[HostileGraph]:
    stories = {
        "2001": [HostileStory("201"), HostileStory("202")],
        "2002": [HostileStory("211")],
        "2003": [HostileStory(s, insights_answer=UNKNOWN_ERROR) for s in ("221", "222")],
        "2004": [HostileStory("231", insights_answer=NOT_ENOUGH_VIEWERS)],
        "2005": [HostileStory("241")],
    }
    with HostileGraph(stories) as server:
        server.routes["/2002/stories"] = bad_gzip
        yield server


def function_env(graph: HostileGraph, workdir: Path) -> dict[str, str]:
    accounts = workdir / "accounts.toml"
    accounts.write_text(
        "".join(f'[accounts.{n}]\nig_user_id = "{uid}"\n' for n, uid in ACCOUNTS.items()),
        encoding="utf-8",
    )
    return {
        "IG_ACCESS_TOKEN": SECRET_TOKEN,
        "IG_ACCOUNTS_FILE": str(accounts),
        "IG_GRAPH_API_URL": graph.url,
        "STORAGE_URL": str(workdir / "lake"),
        "IG_BACKOFF_BASE_SECONDS": "0.001",
        "IG_BACKOFF_MAX_SECONDS": "0.005",
        "IG_MAX_ATTEMPTS": "3",
    }


@pytest.fixture(scope="module")
def function(graph: HostileGraph, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Function]:
    workdir = tmp_path_factory.mktemp("function-edges")
    with serve_function(function_env(graph, workdir), workdir) as fn:
        yield fn


@pytest.mark.parametrize(
    "body",
    [b"[" * 30000 + b"]" * 30000, b'{"accounts": ' + b"[" * 20000 + b"]" * 20000 + b"}"],
    ids=["array", "in-accounts"],
)
def test_deeply_nested_json_is_400(function: Function, body: bytes) -> None:
    """JSON nested deeper than the parser goes (within 64 KiB) is the caller's mistake: 400."""
    before = lake_state(function.lake)
    response = function.post(body)
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]
    assert lake_state(function.lake) == before


def raw_post(url: str, body: bytes) -> tuple[int, bytes]:
    """POST a hand-written chunked body on a plain socket; the status and the answer's body."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "body",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"40\r\n{}"],
    ids=["bad-size", "no-terminator", "cut-short"],
)
def test_malformed_chunked_body_is_400(function: Function, body: bytes) -> None:
    """A chunked body that breaks the chunked encoding is a bad request (400, JSON), not a crash."""
    before = lake_state(function.lake)
    status, answer = raw_post(function.url, body)
    assert status == 400, answer
    assert "malformed request body" in json.loads(answer)["error"]
    assert lake_state(function.lake) == before


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("access_token=\\zzsecret1", False),
        ("access_token=\nzzsecret1\\", False),
        ('x"access_token=zzsecret1', True),
        ('x\'access_token": "zzsecret1"', True),
    ],
    ids=["backslash", "newline", "quote", "json-in-json"],
)
def test_an_error_text_with_quotes_or_access_token_is_valid_json(
    function: Function, name: str, masked: bool
) -> None:
    """An error quoting the caller's text (quotes, backslashes, `access_token=`) is valid JSON after
    scrubbing; a value right after `access_token=` is masked (after a backslash it is no value)."""
    for body in ({"accounts": [name]}, {name: 1}):
        response = function.post(json.dumps(body).encode())
        assert response.status_code == 400
        error = response.json()["error"]  # fails when scrubbing broke the JSON
        assert "access_token" in error
        assert ("zzsecret1" not in error) is masked


def test_a_failed_account_is_502_and_below_threshold_is_not(function: Function) -> None:
    """An undecodable answer or stories that all ended in error fail their account (502, named,
    others stored); stories below 5 viewers do not (200)."""
    gzip = function.post(b'{"accounts": ["GOOD", "GZIP"]}')
    assert gzip.status_code == 502, gzip.text
    accounts = {a["account"]: a for a in gzip.json()["accounts"]}
    assert "response body is not JSON" in accounts["GZIP"]["error"]
    assert accounts["GOOD"]["ok"]
    assert accounts["GOOD"]["stored_rows"] == 2
    failed = function.post(b'{"accounts": ["GOOD", "ALLERR"]}')
    assert failed.status_code == 502, failed.text
    allerr = next(a for a in failed.json()["accounts"] if a["account"] == "ALLERR")
    assert "not one of 2 stories got a metric" in allerr["error"]
    few = function.post(b'{"accounts": ["GOOD", "FEW"]}')
    assert few.status_code == 200, few.text


def test_a_bug_in_one_account_is_502_with_the_traceback_in_the_log(
    graph: HostileGraph, tmp_path: Path
) -> None:
    """A bug injected into one account's capture: 502, the account named with the error, the
    others stored; the traceback in an ERROR log entry, never in the answer."""
    source = tmp_path / "buggy_main.py"
    source.write_text(BUGGY_SOURCE, encoding="utf-8")
    with serve_function(function_env(graph, tmp_path), tmp_path, source) as function:
        response = function.post(b'{"accounts": ["GOOD", "SURR"]}')
        entries = function.entries()
    assert response.status_code == 502, response.text
    accounts = {a["account"]: a for a in response.json()["accounts"]}
    assert "ZeroDivisionError: a bug in our code" in accounts["SURR"]["error"]
    assert accounts["GOOD"]["stored_rows"] == 2
    assert "Traceback" not in response.text
    crash = next(e for e in entries if e.get("event") == "account_crash")
    assert crash["severity"] == "ERROR"
    assert "ZeroDivisionError" in crash["stack_trace"]
