"""How many stories keep their last minutes, and at what cost: hourly runs alone vs hourly + sweeps.

    .venv/bin/python bench/bench_sweep.py [--hours 24] [--end 2026-11-25T00:00:00+00:00] [--seed 0]

On the simulated day (the five seed accounts of the Graph API simulator, served over loopback HTTP
on a virtual clock, through the production jobs into a temporary local lake), it replays the same
hours three times:

- hourly only: the hourly run at every full hour (the baseline);
- + sweeps, listing: a sweep every 10 minutes that lists every account's live stories first;
- + sweeps, planned: the production sweep, which plans from the lake's last hourly listing (no
  listing call) and only fetches the stories about to expire.

For each it prints the share of expired stories whose last snapshot came within 10 minutes of
expiry (read back by the audit), the API operations (a GET is one, a batch counts its operations)
and HTTP requests the runs made, and the extra operations over the baseline. Goal (issue 12):
at least 99 % with sweeps, at most 25 % extra operations. Exit 1 when the production sweep
misses a goal. Replays are deterministic for a seed and an end moment.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta

from pydantic import SecretStr

from ig_story_metrics.clock import VirtualClock
from ig_story_metrics.jobs import day
from ig_story_metrics.jobs.sweep import Plan
from ig_story_metrics.model.accounts import Account
from ig_story_metrics.report.audit import DayRun
from ig_story_metrics.settings import load_settings
from ig_story_metrics.simulator import DEFAULT_TOKEN, SEED_ACCOUNTS, simulator_server
from ig_story_metrics.storage import open_lake

GOAL_SHARE = 0.99
GOAL_EXTRA = 0.25
CONFIGS: tuple[tuple[str, bool, Plan], ...] = (
    ("hourly only", False, "lake"),
    ("+ sweeps, listing", True, "list"),
    ("+ sweeps, planned", True, "lake"),
)


def replay(start: datetime, end: datetime, seed: int, sweeps: bool, plan: Plan) -> DayRun:
    """One replay of [start, end) into a fresh lake; the coverage figures filled in."""
    clock = VirtualClock(start)
    accounts = [Account(name, uid) for name, uid in SEED_ACCOUNTS.items()]
    with (
        tempfile.TemporaryDirectory() as folder,
        simulator_server(seed=seed, clock=clock) as server,
        open_lake(folder) as lake,
    ):
        settings = load_settings({"IG_GRAPH_API_URL": server.url, "STORAGE_URL": folder})
        tokens = {a.name: SecretStr(DEFAULT_TOKEN) for a in accounts}
        ticks = day.schedule(start, end, sweeps=sweeps)
        run = day.run(settings, accounts, tokens, clock, ticks, lake=lake, plan=plan)
        report = day.audit_replay(lake, run, end)
        print(
            f"  {len(ticks)} runs replayed in {run.duration_seconds:.1f} s; "
            f"{report.finals_caught}/{report.expired} finals caught",
        )
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument(
        "--end",
        type=datetime.fromisoformat,
        default=datetime.fromisoformat("2026-11-25T00:00:00+00:00"),
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    end: datetime = args.end
    start = end - timedelta(hours=args.hours)
    print(
        f"simulated {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC, seed {args.seed}, "
        f"accounts {', '.join(SEED_ACCOUNTS)}"
    )
    results = []
    for name, sweeps, plan in CONFIGS:
        print(f"{name} ...")
        started = time.monotonic()
        run = replay(start, end, args.seed, sweeps, plan)
        results.append((name, run, time.monotonic() - started))
    base = results[0][1].hourly.operations
    header = f"{'schedule':<20}{'last 10 min':>12}{'operations':>12}{'extra':>8}{'requests':>10}{'wall s':>8}"
    print(header)
    print("-" * len(header))
    for name, run, wall in results:
        share = run.share_with_sweeps
        ops = run.hourly.operations + run.sweep.operations
        requests = run.hourly.http_requests + run.sweep.http_requests
        print(
            f"{name:<20}{'-' if share is None else f'{share:.1%}':>12}{ops:>12}"
            f"{(ops - base) / base:>+8.1%}{requests:>10}{wall:>8.1f}"
        )
    final = results[-1][1]
    share = final.share_with_sweeps or 0.0
    extra = final.extra_operations or 0.0
    met = share >= GOAL_SHARE and extra <= GOAL_EXTRA
    print(
        f"goal: >= {GOAL_SHARE:.0%} with sweeps at <= {GOAL_EXTRA:.0%} extra operations: "
        f"{share:.1%} at {extra:+.1%} -> {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
