"""What a run reports about storage, through the CLI against the Graph API simulator: a file moved
aside is counted, a schema failure is a warning of an account whose rows are stored, and a lock
held by another process ends the run within its budget with the rows not stored, named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ig_story_metrics.simulator import DEFAULT_TOKEN, SimulatorServer, simulator_server
from ig_story_metrics.storage.layout import snapshot_key
from tests.conftest import run_cli
from tests.storage.conftest import hold_lock, lock_of


@pytest.fixture(scope="module")
def graph() -> Iterator[SimulatorServer]:
    """The Graph API simulator on a free loopback port (real clock), for the whole module."""
    with simulator_server() as server:
        yield server


def days_around_now() -> list[date]:
    """Today and tomorrow (UTC): the run's day, even if it starts just before midnight."""
    today = datetime.now(UTC).date()
    return [today, today + timedelta(days=1)]


def run_npi(graph: SimulatorServer, tmp_path: Path, **more: str) -> tuple[int, dict[str, Any]]:
    """`ig-story-metrics run NPI --json` into tmp_path/lake; the exit code and NPI's report."""
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[accounts.NPI]\nig_user_id = "17841400000000001"\n', encoding="utf-8")
    env = {
        "IG_GRAPH_API_URL": graph.url,
        "IG_ACCESS_TOKEN": DEFAULT_TOKEN,
        "IG_ACCOUNTS_FILE": str(accounts),
        "STORAGE_URL": str(tmp_path / "lake"),
        **more,
    }
    done = run_cli(["run", "NPI", "--json"], env, tmp_path)
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    (npi,) = report["accounts"]
    npi["_day"] = report["fetched_at"][:10]
    return done.returncode, npi


def test_a_file_moved_aside_is_counted_in_the_report(
    graph: SimulatorServer, tmp_path: Path
) -> None:
    """An unreadable daily file: the run stores its rows in a fresh file, exit 0, and the report
    lists the quarantined file and warns about it."""
    lake = tmp_path / "lake"
    for day in days_around_now():
        path = lake / snapshot_key("NPI", day)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"PAR1 not really parquet")
    code, npi = run_npi(graph, tmp_path)
    assert code == 0
    parquet = str(lake / snapshot_key("NPI", date.fromisoformat(npi["_day"])))
    (moved,) = npi["quarantined"]
    assert moved.startswith(parquet + ".corrupt-")
    assert Path(moved).read_bytes() == b"PAR1 not really parquet"
    assert npi["stored_rows"] == npi["listed"] > 0
    assert any(moved in warning for warning in npi["warnings"])


def test_a_schema_failure_is_a_warning_and_the_rows_count_as_stored(
    graph: SimulatorServer, tmp_path: Path
) -> None:
    """The schema JSON cannot be written (a file where its folder goes): exit 0, the account is
    ok with its rows stored, and a warning names the schema file."""
    blocker = tmp_path / "lake" / "Instagram" / "NPI" / "schemas"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    code, npi = run_npi(graph, tmp_path)
    assert code == 0
    assert npi["ok"] is True
    assert npi["stored_rows"] == npi["listed"] > 0
    assert npi["files"] == [
        str(tmp_path / "lake" / snapshot_key("NPI", date.fromisoformat(npi["_day"])))
    ]
    assert any("schema file was not written" in w and str(blocker) in w for w in npi["warnings"])


def test_a_lock_held_elsewhere_ends_the_run_in_its_budget_with_rows_named_not_stored(
    graph: SimulatorServer, tmp_path: Path
) -> None:
    """Another process holds the day's lock: a run with a 2 s budget returns (within the
    subprocess timeout) with exit 1, the lock named, no row stored and each story id listed as
    not stored."""
    lake = tmp_path / "lake"
    with ExitStack() as stack:
        for day in days_around_now():
            stack.enter_context(hold_lock(lock_of(lake, Path(snapshot_key("NPI", day)))))
        code, npi = run_npi(graph, tmp_path, IG_RUN_BUDGET_SECONDS="2")
    assert code == 1
    assert npi["ok"] is False
    assert "another writer held its lock" in npi["error"]
    assert f"({npi['listed']} rows not stored)" in npi["error"]
    assert npi["stored_rows"] == 0
    assert len(npi["not_stored"]) == npi["listed"] > 0
    live = {s.id for s in graph.simulator.world.live_stories("NPI")}
    assert set(npi["not_stored"]) <= live
