"""The Cloud Function as Cloud Run serves it: `functions-framework` running main.py on a real port.

Each server is a subprocess with the environment of a run against the Graph API simulator; requests
go over HTTP as the README's `curl` does; the server is always stopped (terminate, then kill).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer

from .conftest import ROOT, SECRET_TOKEN, env_for, make_server, write_accounts

FUNCTIONS_FRAMEWORK = Path(sys.executable).parent / "functions-framework"
MAX_BODY = 64 * 1024
WRONG_TOKEN = "EAAexpired-or-unknown-token-999"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def live_clock() -> datetime:
    """The simulator follows the real clock, as the function's runs do (they take no clock)."""
    return datetime.now(UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Function:
    """A running functions-framework server and where its output and files go."""

    url: str
    lake: Path
    stdout: Path
    stderr: Path

    def post(self, content: bytes | Iterable[bytes] = b"", **kw: Any) -> httpx.Response:
        """POST like the README: `curl -X POST -H "Content-Type: application/json" -d ...`."""
        headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
        return httpx.post(self.url, content=content, headers=headers, timeout=60, **kw)

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8") + self.stderr.read_text(encoding="utf-8")

    def entries(self) -> list[dict[str, Any]]:
        """Every stdout line as JSON (fails on a line that is not a JSON object)."""
        lines = self.stdout.read_text(encoding="utf-8").splitlines()
        parsed = [json.loads(line) for line in lines if line.strip()]
        assert all(isinstance(e, dict) for e in parsed)
        return parsed


def server_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment minus any settings of our own, plus the run's settings."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IG_", "STORAGE_", "LOG_")) and k != "PYTHONPATH"
    }
    return {**base, "PYTHONUNBUFFERED": "1", **env}


@contextmanager
def serve_target(
    target: str, source: Path, env: Mapping[str, str], workdir: Path, name: str
) -> Iterator[tuple[str, Path, Path]]:
    """functions-framework serving `target` of `source` on a free loopback port until the block
    ends: (its URL, the files of its stdout and stderr, `name`.stdout and `name`.stderr)."""
    port = free_port()
    stdout, stderr = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [
                str(FUNCTIONS_FRAMEWORK),
                "--target",
                target,
                "--source",
                str(source),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=server_env(env),
            cwd=workdir,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_until_listening(proc, port, stderr)
        yield f"http://127.0.0.1:{port}/", stdout, stderr
    finally:
        stop(proc)


@contextmanager
def serve_function(
    env: Mapping[str, str], workdir: Path, source: Path = ROOT / "main.py"
) -> Iterator[Function]:
    """functions-framework serving `source` (main.py) on a free loopback port until the block ends."""
    served = serve_target("fetch_story_metrics", source, env, workdir, "function")
    with served as (url, stdout, stderr):
        yield Function(url, Path(env["STORAGE_URL"]), stdout, stderr)


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, stderr: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"functions-framework exited {proc.returncode}: {stderr.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    pytest.fail(f"functions-framework did not listen on {port} within {START_TIMEOUT} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server (gunicorn stops its workers), kill its process group if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    # a worker left behind by a dying master is in the same (our own) process group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def lake_state(lake: Path) -> dict[str, tuple[int, int]]:
    """Every file of the lake with its size and modification time: any write changes it."""
    if not lake.exists():
        return {}
    return {
        str(p.relative_to(lake)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in lake.rglob("*")
        if p.is_file()
    }


def rows_of_run(parquet: str, run_id: str) -> int:
    return pl.read_parquet(parquet).filter(pl.col("run_id") == run_id).height


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with make_server(clock=live_clock) as server:
        yield server


@pytest.fixture(scope="module")
def function(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Function]:
    """One function server for the module: the five seed accounts, all accepted by the simulator.

    LOG_EXECUTION_ID=true as in Cloud Functions: Functions Framework then installs its own root
    handler and wraps stdout per request, which the function's logging must cooperate with.
    """
    workdir = tmp_path_factory.mktemp("function")
    accounts = write_accounts(workdir / "accounts.toml")
    env = env_for(simulator, workdir, accounts, LOG_EXECUTION_ID="true")
    with serve_function(env, workdir) as fn:
        yield fn


@pytest.mark.parametrize("body", [b"{}", b"", b" \n"], ids=["empty-object", "empty", "blank"])
def test_no_accounts_named_runs_every_account(function: Function, body: bytes) -> None:
    """`{}` or an empty body runs all five seed accounts: 200, the report, rows in every file."""
    response = function.post(body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["ok"] is True
    assert [a["account"] for a in report["accounts"]] == list(SEED_ACCOUNTS)
    for account in report["accounts"]:
        assert account["ok"] is True
        assert account["stored_rows"] == account["listed"] > 0
        parquet = next(f for f in account["files"] if f.endswith(".parquet"))
        assert Path(parquet).is_relative_to(function.lake / "Instagram" / account["account"])
        assert rows_of_run(parquet, report["run_id"]) == account["stored_rows"]


def test_named_account_runs_only_that_account(function: Function) -> None:
    """`{"accounts": ["NPI"]}` runs NPI alone: the report and the files written are NPI's only."""
    before = lake_state(function.lake)
    response = function.post(b'{"accounts": ["NPI"]}')
    assert response.status_code == 200, response.text
    report = response.json()
    assert [a["account"] for a in report["accounts"]] == ["NPI"]
    after = lake_state(function.lake)
    changed = {path for path in after if before.get(path) != after[path]}
    assert changed
    assert all(path.startswith("Instagram/NPI/") for path in changed)
    parquet = report["accounts"][0]["files"][0]
    assert rows_of_run(parquet, report["run_id"]) == report["accounts"][0]["stored_rows"] > 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b'["NPI"]', "must be a JSON object"),
        (b'{"accounts": "NPI"}', "non-empty list"),
        (b'{"accounts": []}', "non-empty list"),
        (b'{"accounts": null}', "non-empty list"),
        (b'{"accounts": [1]}', "must hold strings"),
        (b'{"accounts": ["../x"]}', "invalid account name"),
        (b'{"accounts": ["NOPE"]}', "unknown account 'NOPE'"),
        (b'{"accounts": ["NPI", "NOPE"]}', "unknown account 'NOPE'"),
        (b'{"acounts": ["NPI"]}', "unknown key(s) 'acounts'"),
        (b'{"mode": "weekly"}', "unknown mode 'weekly'"),
        (b'{"mode": "hourly"}', "unknown mode 'hourly'"),
        (b'{"mode": ["sweep"]}', "unknown mode ['sweep']"),
        (b'{"mode": null, "accounts": ["NPI"]}', "unknown mode None"),
        (b'{"mode": "sweep", "accounts": ["NOPE"]}', "unknown account 'NOPE'"),
    ],
)
def test_bad_body_is_400_and_runs_nothing(function: Function, body: bytes, expected: str) -> None:
    """A body that is not `{"accounts": [known names]}` gets 400 with a JSON error; no file changes."""
    before = lake_state(function.lake)
    response = function.post(body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert expected in response.json()["error"]
    assert lake_state(function.lake) == before


@pytest.mark.parametrize(
    ("body", "accounts"),
    [
        (b'{"mode": "sweep"}', list(SEED_ACCOUNTS)),
        (b'{"mode": "sweep", "accounts": ["MD"]}', ["MD"]),
    ],
)
def test_mode_sweep_runs_the_sweep(function: Function, body: bytes, accounts: list[str]) -> None:
    """`{"mode": "sweep"}` runs the sweep (all accounts, or those named): the report says sweep,
    and any row it stored says capture "sweep"."""
    response = function.post(body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["capture"] == "sweep"
    assert [a["account"] for a in report["accounts"]] == accounts
    for account in report["accounts"]:
        for parquet in (f for f in account["files"] if f.endswith(".parquet")):
            rows = pl.read_parquet(parquet).filter(pl.col("run_id") == report["run_id"])
            assert set(rows["capture"]) == {"sweep"}
    summaries = [e for e in function.entries() if e.get("run_id") == report["run_id"]]
    assert any(e.get("event") == "run_summary" and e["capture"] == "sweep" for e in summaries)


def test_body_over_64_kib_is_413(function: Function) -> None:
    """A body over 64 KiB gets 413, by Content-Length and by the bytes of a chunked upload."""
    before = lake_state(function.lake)
    declared = function.post(b'{"accounts": ["NPI"]}' + b" " * MAX_BODY)
    assert declared.status_code == 413
    assert "limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield b'{"accounts": ["NPI"]}'
        for _ in range(MAX_BODY // 1024 + 1):
            yield b" " * 1024

    chunked = function.post(chunks())
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413
    assert "over" in chunked.json()["error"]
    assert lake_state(function.lake) == before


def test_body_of_exactly_64_kib_is_accepted(function: Function) -> None:
    """The limit is inclusive: a 65536-byte body (padded JSON) runs."""
    body = b'{"accounts": ["LT"]}'
    response = function.post(body + b" " * (MAX_BODY - len(body)))
    assert response.status_code == 200, response.text
    assert [a["account"] for a in response.json()["accounts"]] == ["LT"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_only_post_runs(function: Function, method: str) -> None:
    """Any method but POST gets 405 with `Allow: POST` and runs nothing."""
    before = lake_state(function.lake)
    response = httpx.request(method, function.url, timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "use POST" in response.json()["error"]
    assert lake_state(function.lake) == before


def test_logs_are_json_lines_with_a_run_summary(function: Function) -> None:
    """stdout is JSON lines: a run gets one INFO summary with its counts, a bad body a WARNING;
    each entry once, labelled with the request's execution id."""
    headers = {"Function-Execution-Id": "exec-RE-0001"}
    report = function.post(b'{"accounts": ["RE"]}', headers=headers).json()
    function.post(b'{"accounts": ["NOPE"]}')
    entries = function.entries()
    assert all({"severity", "message", "time"} <= set(e) for e in entries)
    summaries = [
        e for e in entries if e.get("event") == "run_summary" and e["run_id"] == report["run_id"]
    ]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["severity"] == "INFO"
    assert summary["accounts"] == ["RE"]
    assert summary["listed"] == report["accounts"][0]["listed"] > 0
    assert summary["stored_rows"] == report["accounts"][0]["stored_rows"]
    assert summary["logging.googleapis.com/labels"] == {"execution_id": "exec-RE-0001"}
    # only our handler writes: Functions Framework's own would repeat each entry on stderr
    assert report["run_id"] not in function.stderr.read_text(encoding="utf-8")
    per_account = [
        e for e in entries if e.get("event") == "account" and e["run_id"] == report["run_id"]
    ]
    assert [(e["account"], e["severity"]) for e in per_account] == [("RE", "INFO")]
    refused = [e for e in entries if e.get("event") == "bad_request"]
    assert any("unknown account 'NOPE'" in e["message"] for e in refused)
    assert all(e["severity"] == "WARNING" for e in refused)
    # httpx would log every request at INFO; the function keeps it at WARNING
    assert not [e for e in entries if e["logger"].startswith(("httpx", "httpcore"))]
    assert SECRET_TOKEN not in function.output()


def test_failing_account_is_502_and_the_others_are_stored(tmp_path: Path) -> None:
    """An account whose token is rejected fails the run (502): the report names it, others stored."""
    accounts = write_accounts(tmp_path / "accounts.toml", SEED_ACCOUNTS, MD="IG_TOKEN_MD")
    with make_server(clock=live_clock) as server:
        env = env_for(server, tmp_path, accounts, IG_TOKEN_MD=WRONG_TOKEN)
        with serve_function(env, tmp_path) as function:
            response = function.post(b"{}")
            entries = function.entries()
            output = function.output()
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["ok"] is False
    failed = [a for a in report["accounts"] if not a["ok"]]
    assert [a["account"] for a in failed] == ["MD"]
    assert "190" in failed[0]["error"]
    stored = [a for a in report["accounts"] if a["ok"]]
    assert sorted(a["account"] for a in stored) == sorted(set(SEED_ACCOUNTS) - {"MD"})
    assert all(a["stored_rows"] > 0 for a in stored)
    assert sorted(p.name for p in (tmp_path / "lake/Instagram").iterdir()) == sorted(
        set(SEED_ACCOUNTS) - {"MD"}
    )
    errors = [e for e in entries if e["severity"] == "ERROR"]
    assert [e["account"] for e in errors if e.get("event") == "account_failed"] == ["MD"]
    summary = next(e for e in entries if e.get("event") == "run_summary")
    assert summary["failed_accounts"] == ["MD"]
    for secret in (SECRET_TOKEN, WRONG_TOKEN):
        assert secret not in response.text
        assert secret not in output


def test_a_missing_token_fails_that_account_only(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    """MD's IG_TOKEN_MD is set nowhere: 502, MD failed naming the variable, the others stored."""
    accounts = write_accounts(tmp_path / "accounts.toml", SEED_ACCOUNTS, MD="IG_TOKEN_MD")
    with serve_function(env_for(simulator, tmp_path, accounts), tmp_path) as function:
        response = function.post(b"{}")
        output = function.output()
    assert response.status_code == 502
    report = {a["account"]: a for a in response.json()["accounts"]}
    assert not report["MD"]["ok"]
    assert "set IG_TOKEN_MD" in report["MD"]["error"]
    assert report["MD"]["http_requests"] == 0
    assert all(a["ok"] and a["stored_rows"] > 0 for n, a in report.items() if n != "MD")
    assert SECRET_TOKEN not in output


def test_deployment_errors_are_500(tmp_path: Path, simulator: SimulatorServer) -> None:
    """A malformed token or a broken accounts file is the deployment's fault: 500, nothing runs."""
    accounts = write_accounts(tmp_path / "accounts.toml", SEED_ACCOUNTS, MD="IG_TOKEN_MD")
    env = env_for(simulator, tmp_path, accounts, IG_TOKEN_MD="EAAline\nbreak")
    with serve_function(env, tmp_path) as function:
        malformed = function.post(b"{}")
        assert malformed.status_code == 500
        assert (
            "IG_TOKEN_MD (the token of account MD) holds a line break" in malformed.json()["error"]
        )
        assert "EAAline" not in malformed.text
        assert lake_state(function.lake) == {}
        # the accounts that need no malformed token still run
        assert function.post(b'{"accounts": ["NPI"]}').status_code == 200

        accounts.write_text("[accounts.NPI\nig_user_id = 1", encoding="utf-8")
        before = lake_state(function.lake)
        for body in (b"{}", b'{"accounts": ["NPI"]}'):
            broken = function.post(body)
            assert broken.status_code == 500
            assert "not valid TOML" in broken.json()["error"]

        accounts.unlink()
        gone = function.post(b"{}")
        assert gone.status_code == 500
        assert "not found" in gone.json()["error"]
        assert lake_state(function.lake) == before
        refused = [e for e in function.entries() if e.get("event") == "config_error"]
        assert [e["severity"] for e in refused] == ["ERROR"] * 4
        assert SECRET_TOKEN not in function.output()


def test_unusable_storage_url_is_500(tmp_path: Path, simulator: SimulatorServer) -> None:
    """A STORAGE_URL the job cannot use is a deployment error: 500 with the reason."""
    accounts = write_accounts(tmp_path / "accounts.toml")
    env = {**env_for(simulator, tmp_path, accounts), "STORAGE_URL": "s3://bucket/prefix"}
    with serve_function(env, tmp_path) as function:
        response = function.post(b"{}")
    assert response.status_code == 500
    assert "unsupported STORAGE_URL" in response.json()["error"]


def import_main(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`import main` in a Python that has the dependencies but not the editable install of the
    package (`-S`: no site processing, so no .pth puts src/ on the path)."""
    return subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import main, ig_story_metrics; print(ig_story_metrics.__file__)",
        ],
        env={**server_env({}), "PYTHONPATH": sysconfig.get_paths()["purelib"]},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_main_finds_the_package_in_a_checkout() -> None:
    """From a checkout, main.py puts src/ on sys.path when ig_story_metrics is not installed."""
    plain = subprocess.run(
        [sys.executable, "-S", "-c", "import ig_story_metrics"],
        env={**server_env({}), "PYTHONPATH": sysconfig.get_paths()["purelib"]},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert plain.returncode != 0  # the package really is not importable without main's help
    result = import_main(ROOT)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == ROOT / "src/ig_story_metrics/__init__.py"


def test_main_uses_the_package_next_to_it_when_deployed(tmp_path: Path) -> None:
    """Laid out as deploy.sh builds it (main.py beside the package), main.py imports that copy."""
    shutil.copy(ROOT / "main.py", tmp_path / "main.py")
    shutil.copytree(
        ROOT / "src/ig_story_metrics",
        tmp_path / "ig_story_metrics",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    result = import_main(tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == tmp_path / "ig_story_metrics/__init__.py"
