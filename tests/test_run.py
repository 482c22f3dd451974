"""The hourly run end to end: CLI -> settings -> pipeline -> simulator over HTTP -> Parquet files."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.jobs import hourly
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.report.models import RunReport
from ig_story_metrics.settings import load_accounts, resolve_tokens, select_accounts
from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer

from .conftest import (
    NOW,
    ROOT,
    SECRET_TOKEN,
    env_for,
    frozen,
    make_server,
    run_cli,
    settings_for,
    write_accounts,
)

DAY = NOW.date().isoformat()


def lake_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def run_once(server: SimulatorServer, tmp_path: Path, accounts: Path, at=NOW) -> RunReport:  # type: ignore[no-untyped-def]
    settings = settings_for(server, tmp_path, accounts)
    chosen = select_accounts(load_accounts(accounts), [], all_accounts=True)
    tokens = resolve_tokens(settings, chosen, env={})
    return hourly.run(settings, chosen, tokens, clock=frozen(at))


def test_run_writes_the_seed_layout_and_schema(
    sim: SimulatorServer, tmp_path: Path, accounts_file: Path
) -> None:
    """One run writes a daily Parquet file and its schema JSON per account with stories."""
    report = run_once(sim, tmp_path, accounts_file)
    assert report.exit_code == 0
    lake = tmp_path / "lake"
    files = lake_files(lake)
    for name in SEED_ACCOUNTS:
        assert (
            f"Instagram/{name}/insights/stories/{DAY}/instagram_story_metrics_{DAY}.parquet"
            in files
        )
        assert (
            f"Instagram/{name}/schemas/stories/{DAY}/instagram_story_metrics_{DAY}_schema.json"
            in files
        )
    assert not [f for f in files if f.endswith(".tmp")]
    schema = json.loads(
        (
            lake / f"Instagram/NPI/schemas/stories/{DAY}/instagram_story_metrics_{DAY}_schema.json"
        ).read_text()
    )
    assert schema == SNAPSHOTS.json_schema()
    npi = pl.read_parquet(
        lake / f"Instagram/NPI/insights/stories/{DAY}/instagram_story_metrics_{DAY}.parquet"
    )
    assert npi.schema == SNAPSHOTS.polars_schema
    live = sim.simulator.world.live_stories("NPI")
    assert sorted(npi["story_id"].to_list()) == sorted(s.id for s in live)
    assert npi["fetched_at"].unique().to_list() == [NOW]
    assert npi["run_id"].unique().to_list() == [report.run_id]
    # every captured value is the simulator's truth at fetch time
    for row in npi.filter(pl.col("insights_status") == "ok").iter_rows(named=True):
        truth = sim.simulator.truth(row["story_id"])
        assert truth is not None
        assert {k: row[k] for k in truth} == truth


def test_second_run_adds_rows_and_keeps_earlier_ones(tmp_path: Path, accounts_file: Path) -> None:
    """Two runs the same day accumulate in one daily file: the earlier snapshot is kept."""
    first_at, second_at = NOW, NOW + timedelta(hours=1)
    with make_server(clock=frozen(first_at)) as server:
        first = run_once(server, tmp_path, accounts_file, first_at)
    with make_server(clock=frozen(second_at)) as server:
        second = run_once(server, tmp_path, accounts_file, second_at)
    path = (
        tmp_path
        / f"lake/Instagram/NPI/insights/stories/{DAY}/instagram_story_metrics_{DAY}.parquet"
    )
    frame = pl.read_parquet(path)
    by_run = dict(frame.group_by("run_id").len().iter_rows())
    npi_first = next(a for a in first.accounts if a.account == "NPI")
    npi_second = next(a for a in second.accounts if a.account == "NPI")
    assert by_run == {first.run_id: npi_first.listed, second.run_id: npi_second.listed}
    assert sorted(frame["fetched_at"].unique().to_list()) == [first_at, second_at]
    # metrics grow between snapshots of the same story
    wide = (
        frame.filter(pl.col("insights_status") == "ok")
        .pivot(on="run_id", index="story_id", values="reach")
        .drop_nulls()
    )
    assert wide.height > 0
    assert (wide[second.run_id] >= wide[first.run_id]).all()


def test_cli_run_reports_and_exits_zero(
    sim: SimulatorServer, tmp_path: Path, accounts_file: Path
) -> None:
    """`ig-story-metrics run NPI LT --json` prints the report; exit 0 when both accounts succeeded."""
    result = run_cli(
        ["run", "NPI", "LT", "--json"], env_for(sim, tmp_path, accounts_file), tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [a["account"] for a in report["accounts"]] == ["NPI", "LT"]
    assert report["ok"] is True
    npi = report["accounts"][0]
    assert npi["listed"] == npi["captured"] + npi["below_threshold"] + npi["failed"]
    assert npi["listed"] == len(sim.simulator.world.live_stories("NPI"))
    assert all(Path(f).exists() for f in npi["files"])


def test_cli_summary_table(sim: SimulatorServer, tmp_path: Path, accounts_file: Path) -> None:
    """Without --json the CLI prints a summary table and the paths it wrote."""
    result = run_cli(["run", "--all"], env_for(sim, tmp_path, accounts_file), tmp_path)
    assert result.returncode == 0, result.stderr
    for heading in ("account", "stories listed", "captured", "below threshold", "failed"):
        assert heading in result.stdout
    assert "instagram_story_metrics_" in result.stdout


def test_run_local_shim_keeps_the_original_commands(
    sim: SimulatorServer, tmp_path: Path, accounts_file: Path
) -> None:
    """`python run_local.py NPI` and `python run_local.py --all` run the job as before."""
    env = env_for(sim, tmp_path, accounts_file)
    one = run_cli(["NPI"], env, tmp_path, script=[sys.executable, str(ROOT / "run_local.py")])
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "lake/Instagram/NPI").is_dir()
    assert not (tmp_path / "lake/Instagram/LT").exists()
    every = run_cli(["--all"], env, tmp_path, script=[sys.executable, str(ROOT / "run_local.py")])
    assert every.returncode == 0, every.stderr
    assert sorted(p.name for p in (tmp_path / "lake/Instagram").iterdir()) == sorted(SEED_ACCOUNTS)


def test_one_failing_account_does_not_stop_the_others(tmp_path: Path, accounts_file: Path) -> None:
    """An account whose token the API rejects fails (exit 1); the other accounts are stored."""
    accounts = write_accounts(tmp_path / "acc.toml", SEED_ACCOUNTS, MD="IG_TOKEN_MD")
    with make_server() as server:
        env = env_for(server, tmp_path, accounts, IG_TOKEN_MD="EAAexpired-or-unknown-token-999")
        result = run_cli(["run", "--all", "--json"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    failed = [a for a in report["accounts"] if not a["ok"]]
    assert [a["account"] for a in failed] == ["MD"]
    assert "190" in failed[0]["error"]
    assert "EAAexpired" not in result.stdout + result.stderr
    stored = sorted(p.name for p in (tmp_path / "lake/Instagram").iterdir())
    assert stored == sorted(set(SEED_ACCOUNTS) - {"MD"})


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        ("bad-token", ["run", "NPI"], "IG_ACCESS_TOKEN (the token of account NPI) holds a line"),
        ("no-file", ["run", "NPI"], "not found"),
        ("bad-toml", ["run", "NPI"], "not valid TOML"),
        ("bad-name", ["run", "--all"], "names may only use"),
        ("ok", ["run", "NOPE"], "unknown account 'NOPE'"),
        ("ok", ["run", "../etc"], "invalid account name"),
        ("ok", ["run"], "no account given"),
        ("ok", ["run", "NPI", "--all"], "not both"),
        ("bad-version", ["run", "NPI"], "IG_GRAPH_API_VERSION"),
    ],
)
def test_configuration_errors_are_one_line_exit_2(
    sim: SimulatorServer,
    tmp_path: Path,
    accounts_file: Path,
    setup: str,
    args: list[str],
    expected: str,
) -> None:
    """Each configuration mistake gives a one-line error naming it, exit 2, no traceback."""
    env = env_for(sim, tmp_path, accounts_file)
    if setup == "bad-token":
        env["IG_ACCESS_TOKEN"] = "EAAline\nbreak"
    elif setup == "no-file":
        env["IG_ACCOUNTS_FILE"] = str(tmp_path / "missing.toml")
    elif setup == "bad-toml":
        accounts_file.write_text("[accounts.NPI\nig_user_id = 1")
    elif setup == "bad-name":
        accounts_file.write_text('[accounts."N P I"]\nig_user_id = "1"\n')
    elif setup == "bad-version":
        env["IG_GRAPH_API_VERSION"] = "25"
    result = run_cli(args, env, tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lake").exists()


def test_token_never_appears_in_output_or_files(
    sim: SimulatorServer, tmp_path: Path, accounts_file: Path
) -> None:
    """The access token is absent from stdout, stderr (both formats) and every file written."""
    env = env_for(sim, tmp_path, accounts_file)
    outputs = [run_cli(["run", "--all", *flag], env, tmp_path) for flag in ([], ["--json"])]
    assert all(r.returncode == 0 for r in outputs)
    for result in outputs:
        assert SECRET_TOKEN not in result.stdout + result.stderr
    written = [p for p in (tmp_path / "lake").rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert SECRET_TOKEN.encode() not in path.read_bytes()
