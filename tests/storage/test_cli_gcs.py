"""The CLI against the Graph API simulator and the GCS emulator: a gs:// lake end to end, and a
storage failure reported as the account's failure with its rows counted as not stored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.simulator import DEFAULT_TOKEN, SimulatorServer, simulator_server
from ig_story_metrics.storage.layout import snapshot_key, snapshot_schema_key
from tests.storage.conftest import Emulator, free_port
from tests.storage.writer import open_test_lake


@pytest.fixture
def graph() -> Iterator[SimulatorServer]:
    """The Graph API simulator on a free loopback port."""
    with simulator_server() as server:
        yield server


def run_cli(
    graph: SimulatorServer, emulator: Emulator, tmp_path: Path, storage_url: str, **more: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[accounts.NPI]\nig_user_id = "17841400000000001"\n', encoding="utf-8")
    env = emulator.env(
        IG_GRAPH_API_URL=graph.url,
        IG_ACCESS_TOKEN=DEFAULT_TOKEN,
        IG_ACCOUNTS_FILE=str(accounts),
        STORAGE_URL=storage_url,
        **more,
    )
    done = subprocess.run(
        [sys.executable, "-m", "ig_story_metrics", "run", "NPI", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def test_run_into_a_bucket_stores_the_layout_on_gcs(
    graph: SimulatorServer,
    emulator: Emulator,
    bucket: str,
    tmp_path: Path,
) -> None:
    """`STORAGE_URL=gs://bucket/prefix ig-story-metrics run NPI`: exit 0, rows and schema in GCS."""
    done, report = run_cli(graph, emulator, tmp_path, f"gs://{bucket}/bronze")
    assert done.returncode == 0, done.stderr
    (npi,) = report["accounts"]
    day = report["fetched_at"][:10]
    assert npi["stored_rows"] == npi["listed"] > 0
    parquet = f"gs://{bucket}/bronze/Instagram/NPI/insights/stories/{day}/instagram_story_metrics_{day}.parquet"
    assert npi["files"] == [
        parquet,
        parquet.replace("insights", "schemas").replace(".parquet", "_schema.json"),
    ]
    with open_test_lake(f"gs://{bucket}/bronze") as lake:
        stored = lake.read(SNAPSHOTS, "NPI", date.fromisoformat(day))
        assert stored.height == npi["stored_rows"]
        assert set(stored.get_column("run_id").to_list()) == {report["run_id"]}
        assert lake.backend.read(snapshot_schema_key("NPI", date.fromisoformat(day)))[0] is not None
    assert not list(tmp_path.glob("data")), "nothing may be written to the local default folder"


def test_a_missing_bucket_fails_the_account_with_its_rows_not_stored(
    graph: SimulatorServer, emulator: Emulator, tmp_path: Path
) -> None:
    """`STORAGE_URL=gs://missing-bucket`: exit 1, one line naming bucket and object, N rows lost."""
    done, report = run_cli(graph, emulator, tmp_path, "gs://missing-bucket")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (npi,) = report["accounts"]
    day = report["fetched_at"][:10]
    key = snapshot_key("NPI", date.fromisoformat(day))
    assert npi["ok"] is False
    assert npi["listed"] > 0
    assert npi["error"] == (
        f"storage: cannot write gs://missing-bucket/{key}: bucket 'missing-bucket' does not "
        f"exist (404) ({npi['listed']} rows not stored)"
    )
    assert npi["stored_rows"] == 0
    assert npi["files"] == []


def test_a_malformed_gs_url_is_a_usage_error(tmp_path: Path) -> None:
    """`STORAGE_URL=gs://` (no bucket): exit 2 with a one-line message, before any Graph call."""
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[accounts.NPI]\nig_user_id = "17841400000000001"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IG_", "STORAGE_"))}
    env.update(
        IG_GRAPH_API_URL="http://127.0.0.1:9",  # never reached
        IG_ACCESS_TOKEN=DEFAULT_TOKEN,
        IG_ACCOUNTS_FILE=str(accounts),
        STORAGE_URL="gs://",
    )
    done = subprocess.run(
        [sys.executable, "-m", "ig_story_metrics", "run", "NPI"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "STORAGE_URL 'gs://' does not name a valid bucket" in done.stderr


def test_an_unreachable_bucket_ends_the_run_in_its_budget_with_rows_named_not_stored(
    graph: SimulatorServer, emulator: Emulator, tmp_path: Path
) -> None:
    """GCS unreachable (a closed port) and a 3 s run budget: the retries stop with the budget
    (the error says for how long they ran, at most the budget, not the 60 s retry setting), exit
    1, and every row is named as not stored."""
    closed = Emulator(f"http://127.0.0.1:{free_port()}", emulator.process, emulator.log)
    done, report = run_cli(graph, closed, tmp_path, "gs://some-bucket", IG_RUN_BUDGET_SECONDS="3")
    assert done.returncode == 1, done.stderr
    (npi,) = report["accounts"]
    allowed = re.search(r"gave up after retrying for ([0-9.]+) s", npi["error"])
    assert allowed is not None, npi["error"]
    assert float(allowed.group(1)) <= 3
    assert npi["stored_rows"] == 0
    assert len(npi["not_stored"]) == npi["listed"] > 0
