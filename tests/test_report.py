"""The HTML report end to end: `demo --hours 8` then `report` (the CLI in subprocesses, a real lake),
the page opened in headless Chromium with every host unreachable, every chart drawn."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.jobs import report as report_job
from ig_story_metrics.model.coverage import FINAL_ROW_AFTER
from ig_story_metrics.report.html import render
from ig_story_metrics.simulator import SEED_ACCOUNTS
from ig_story_metrics.storage import open_lake

from .conftest import run_cli

HOURS = 8
CHARTS_PER_ACCOUNT = 4  # views and reach curves, exit rate per frame, stories per day


def chromium() -> str:
    """The browser; absent on a developer's machine the test is skipped, on CI (`CI` set, as
    .ci/run sets it after installing Debian's chromium) it fails."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a local file, every host name unresolvable (the page must need none),
    with virtual time so that the page's scripts finish before the DOM is read."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=15000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated day of HOURS hours in a lake, and `report --days 2` of it (once per module)."""
    work = tmp_path_factory.mktemp("report")
    env = {"STORAGE_URL": str(work / "lake")}
    demo = run_cli(["demo", "--hours", str(HOURS)], env, work)
    assert demo.returncode == 0, demo.stderr
    result = run_cli(["report", "--days", "2", "--out", "r.html", "--publish"], env, work)
    assert result.returncode == 0, result.stderr
    assert "report written to r.html" in result.stdout
    return work / "r.html", work / "lake"


def test_the_page_is_self_contained(made: tuple[Path, Path]) -> None:
    """No script, style or picture is fetched: plotly.js and the data are inline."""
    page = made[0].read_text()
    head, bundle, rest = re.split(r"<script>(.*?)</script>", page, maxsplit=1, flags=re.S)
    assert "plotly.js" in bundle[:500]  # the library itself, inline in the page's head
    ours = head + rest  # the bundle names plot.ly in strings it never loads with displaylogo off
    assert "<script src" not in ours
    assert "<link" not in ours
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours)
    for name in SEED_ACCOUNTS:
        assert f"<h2>{name}</h2>" in ours
    # the best and worst stories show their archived pictures, inline (the demo archives media)
    assert len(re.findall(r'<img alt="story \d+" src="data:image/png;base64,', ours)) >= 6


def test_every_chart_draws_in_headless_chromium(made: tuple[Path, Path], tmp_path: Path) -> None:
    """The page's own script counts the charts drawn (body data-charts-drawn): all of them."""
    page, _ = made
    dom = browse(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:2000]
    expected = CHARTS_PER_ACCOUNT * len(SEED_ACCOUNTS)
    assert f'data-charts-expected="{expected}"' in body.group(0)
    assert f'data-charts-drawn="{expected}"' in body.group(0)
    assert "data-chart-error" not in body.group(0)
    assert dom.stdout.count('class="main-svg"') >= expected


def test_a_screenshot_of_the_report(made: tuple[Path, Path], tmp_path: Path) -> None:
    """Chromium takes a screenshot of the page: a PNG of the window's size, not blank."""
    shot = tmp_path / "report.png"
    result = browse(
        made[0], tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1280
    assert len(data) > 30_000  # charts, not an empty page (a blank 1280 x 1600 PNG is ~10 KB)


def test_publish_writes_the_page_into_the_lake(made: tuple[Path, Path]) -> None:
    """--publish puts the same page at {STORAGE_URL}/reports/{date}/report.html."""
    page, lake = made
    day = datetime.now(UTC).date().isoformat()
    assert (lake / "reports" / day / "report.html").read_bytes() == page.read_bytes()


def test_one_account_only(made: tuple[Path, Path]) -> None:
    """--account NAME: the page holds that account's section and no other."""
    _, lake = made
    work = lake.parent
    name = sorted(SEED_ACCOUNTS)[0]
    result = run_cli(
        ["report", "--account", name, "--out", "one.html"], {"STORAGE_URL": str(lake)}, work
    )
    assert result.returncode == 0, result.stderr
    page = (work / "one.html").read_text()
    assert re.findall(r"<h2>([^<]+)</h2>", page) == [name]


def test_a_bad_account_name_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """An account name that cannot be one is refused before anything is read: one line, exit 2."""
    result = run_cli(
        ["report", "--account", "../etc", "--out", "x.html"],
        {"STORAGE_URL": str(tmp_path / "lake")},
        tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--account" in result.stderr
    assert not (tmp_path / "x.html").exists()


def test_an_empty_lake_gives_a_page_that_says_so(tmp_path: Path) -> None:
    """No stored stories: still a page (exit 0), saying there is nothing, with no chart."""
    result = run_cli(["report"], {"STORAGE_URL": str(tmp_path / "lake")}, tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report.html").read_text()
    assert "No stories were stored in these days." in page


def test_curves_mark_hourly_and_sweep_points(made: tuple[Path, Path]) -> None:
    """In the chart data, hourly snapshots are circles and the sweep's points diamonds; a story
    that expired during the day ends its curve on a sweep point."""
    page = made[0].read_text()
    block = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)
    assert block
    charts = json.loads(block.group(1))
    curves = [c for c in charts if "by story age" in c["figure"]["layout"]["title"]["text"]]
    assert len(curves) == 2 * len(SEED_ACCOUNTS)
    symbols = [t["marker"]["symbol"] for c in curves for t in c["figure"]["data"]]
    assert any("circle" in s for s in symbols)
    assert any(s[-1] == "diamond" and s[0] == "circle" for s in symbols)


def test_the_coverage_counts_stories_without_their_final_row(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    """The page's coverage has the audit's count of expired stories without their final row: 0
    where the runs finalized every story, and a lost partition's expired stories once it is gone."""
    page, lake = made
    assert "<th>without final row</th>" in page.read_text()
    now = datetime.now(UTC)
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    with open_lake(str(copy)) as opened:
        built = report_job.build(opened, now=now, days=2)
        assert sum(len(c.missing_final_rows) for c in built.coverage) == 0
        due = now - FINAL_ROW_AFTER
        files = sorted(copy.glob("tables/story_final/account=*/posted_date=*/*.parquet"))
        lost = {
            f: pl.read_parquet(f).filter(pl.col("expires_at") <= due)["story_id"].to_list()
            for f in files
        }
        gone, stories = max(lost.items(), key=lambda item: len(item[1]))
        assert stories
        gone.unlink()
        built = report_job.build(opened, now=now, days=2)
    named = {s for c in built.coverage for s in c.missing_final_rows}
    assert named == set(stories)
    account = gone.parent.parent.name.removeprefix("account=")
    cells = re.findall(r"<td>(\d+)</td></tr>", render(built))
    assert str(len(stories)) in cells
    assert {c.account for c in built.coverage if c.missing_final_rows} == {account}
