"""Shards: `run --all --shard I/N` and Cloud Run Jobs tasks capture each account exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.errors import CallerError, SetupError
from ig_story_metrics.model.shards import Shard, parse_shard, shard_of
from ig_story_metrics.settings import prepare_run
from ig_story_metrics.simulator import GraphSimulator, SimulatorServer, World
from ig_story_metrics.simulator.world import fleet_accounts

from .conftest import FAST_ENV, SECRET_TOKEN, env_for, frozen, run_cli, write_accounts

FLEET = fleet_accounts(40)


def test_shard_of_is_a_stable_hash_of_the_name() -> None:
    """The shard depends on the name alone, the same everywhere (sha256, not Python's hash())."""
    assert [shard_of(n, 4) for n in ("NPI", "LT", "MD", "RE", "SML")] == [3, 2, 3, 3, 1]
    for name in FLEET:
        assert sum(Shard(i, 7).holds(name) for i in range(7)) == 1


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "0/0", "1/ 2x", ""])
def test_a_bad_shard_is_refused_with_one_line(text: str) -> None:
    """--shard takes I/N with 0 <= I < N; anything else is a ValueError naming the rule."""
    with pytest.raises(ValueError, match="shard") as caught:
        parse_shard(text)
    assert "\n" not in str(caught.value)


def test_cloud_run_task_index_and_count_pick_the_shard(tmp_path: Path) -> None:
    """CLOUD_RUN_TASK_INDEX/COUNT shard --all like --shard does; a bad pair is refused at start."""
    accounts = write_accounts(tmp_path / "accounts.toml", FLEET)
    env = {"IG_ACCESS_TOKEN": SECRET_TOKEN, "IG_ACCOUNTS_FILE": str(accounts)}
    everyone = prepare_run([], all_accounts=True, env=env)
    assert len(everyone.accounts) == 40
    task = prepare_run(
        [],
        all_accounts=True,
        env={**env, "CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "4"},
    )
    flag = prepare_run([], all_accounts=True, env=env, shard=Shard(2, 4))
    assert [a.name for a in task.accounts] == [a.name for a in flag.accounts]
    assert {a.name for a in task.accounts} == {n for n in FLEET if shard_of(n, 4) == 2}
    assert set(task.tokens) == {a.name for a in task.accounts}
    with pytest.raises(SetupError, match="CLOUD_RUN_TASK_INDEX"):
        prepare_run(
            [],
            all_accounts=True,
            env={**env, "CLOUD_RUN_TASK_INDEX": "4", "CLOUD_RUN_TASK_COUNT": "4"},
        )
    with pytest.raises(CallerError, match="--all"):
        prepare_run(["fleet0001"], all_accounts=False, env=env, shard=Shard(0, 4))


def test_four_processes_store_every_account_exactly_once(tmp_path: Path) -> None:
    """`run --all --shard 0/4` .. `3/4` in 4 processes at once over 40 accounts: every account is
    stored by exactly one of them, with all its live stories, and no two write the same file."""
    world = World.fleet(40, 3, clock=frozen())
    simulator = GraphSimulator(world, tokens={SECRET_TOKEN: None})
    accounts = write_accounts(tmp_path / "accounts.toml", FLEET)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IG_", "STORAGE_"))}
    with SimulatorServer(simulator) as server:
        env = {**base, **env_for(server, tmp_path, accounts, **FAST_ENV)}
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "ig_story_metrics", "run", "--all", "--json", "--shard", s],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for s in ("0/4", "1/4", "2/4", "3/4")
        ]
        outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0]
    reports = [json.loads(out) for out in outputs]
    names = [a["account"] for report in reports for a in report["accounts"]]
    assert sorted(names) == sorted(FLEET)
    for index, report in enumerate(reports):
        assert all(shard_of(a["account"], 4) == index for a in report["accounts"])
    frame = pl.read_parquet(tmp_path / "lake/Instagram/*/insights/stories/*/*.parquet")
    per_account = frame.group_by("account").agg(
        pl.len().alias("rows"), pl.col("run_id").n_unique().alias("runs")
    )
    assert per_account.height == 40
    assert per_account["rows"].to_list() == [3] * 40
    assert per_account["runs"].to_list() == [1] * 40


def test_a_bad_shard_option_exits_2(tmp_path: Path) -> None:
    """`run --all --shard 5/4`: one line on stderr, exit 2, no traceback."""
    accounts = write_accounts(tmp_path / "accounts.toml", FLEET)
    env = {"IG_ACCESS_TOKEN": SECRET_TOKEN, "IG_ACCOUNTS_FILE": str(accounts)}
    result = run_cli(["run", "--all", "--shard", "5/4"], env, tmp_path)
    assert result.returncode == 2
    assert "shard index" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_local_lake_is_refused_on_cloud_run_jobs(tmp_path: Path) -> None:
    """A Cloud Run Jobs task (CLOUD_RUN_JOB set) refuses a local STORAGE_URL: its disk is lost."""
    accounts = write_accounts(tmp_path / "accounts.toml", FLEET)
    env = {
        "IG_ACCESS_TOKEN": SECRET_TOKEN,
        "IG_ACCOUNTS_FILE": str(accounts),
        "STORAGE_URL": str(tmp_path / "lake"),
        "CLOUD_RUN_JOB": "ig-story-metrics-job-prod",
    }
    with pytest.raises(SetupError, match="CLOUD_RUN_JOB=ig-story-metrics-job-prod"):
        prepare_run([], all_accounts=True, env=env)


def test_the_sweep_takes_its_shard_too(tmp_path: Path) -> None:
    """`sweep --all --shard 1/4` lists only the accounts of shard 1 (and reports only them)."""
    world = World.fleet(40, 3, clock=frozen())
    simulator = GraphSimulator(world, tokens={SECRET_TOKEN: None})
    accounts = write_accounts(tmp_path / "accounts.toml", FLEET)
    with SimulatorServer(simulator) as server:
        env = env_for(server, tmp_path, accounts, **FAST_ENV)
        result = run_cli(["sweep", "--all", "--list", "--json", "--shard", "1/4"], env, tmp_path)
        listed = {a for a, n in simulator.stats.by_account.items() if n}
    assert result.returncode == 0, result.stderr
    names = {a["account"] for a in json.loads(result.stdout)["accounts"]}
    assert names == {n for n in FLEET if shard_of(n, 4) == 1}
    assert listed == names
