"""The media archive over real sockets: the simulator's CDN on loopback serves each story's image or
video from signed links that expire; hourly runs archive them once, write-once, into the lake, and
a failed download (expired link, 404, oversized, wrong type) never costs the capture its rows."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from ig_story_metrics.graph.media import MB, Media, MediaError, MediaFetcher
from ig_story_metrics.simulator import SEED_ACCOUNTS, SimulatorServer
from ig_story_metrics.simulator.cdn import png, video
from ig_story_metrics.simulator.protocol import Answer, Request, Response

from .conftest import env_for, live_count, run, run_cli, stored, write_accounts

SIGNED = ("_nc_sig", "oe=", "/cdn/")  # any piece of a signed link


def media_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "lake").glob("Instagram/*/media/stories/*/*"))


def videos(server: SimulatorServer) -> int:
    world = server.simulator.world
    return sum(1 for a in SEED_ACCOUNTS for s in world.live_stories(a) if s.media_type == "VIDEO")


def test_each_story_is_archived_once_across_two_runs(sim: SimulatorServer, tmp_path: Path) -> None:
    """Run 1 downloads every story's media (and each video's thumbnail) into the lake; run 2
    downloads nothing and rewrites nothing; every row points at its story's file."""
    first = run(sim, tmp_path)
    assert first.ok
    files = media_files(tmp_path)
    stories, clips = live_count(sim), videos(sim)
    assert len(files) == stories + clips
    assert sum(a.media_archived for a in first.accounts) == stories
    downloads = sim.simulator.stats.by_route["cdn"]
    assert downloads == stories + clips
    stamps = {p: p.stat().st_mtime_ns for p in files}

    second = run(sim, tmp_path)
    assert second.ok
    assert sim.simulator.stats.by_route["cdn"] == downloads
    assert sum(a.media_archived for a in second.accounts) == 0
    assert {p: p.stat().st_mtime_ns for p in media_files(tmp_path)} == stamps

    rows = stored(tmp_path)
    assert rows["media_path"].null_count() == 0
    for row in rows.iter_rows(named=True):
        data = (tmp_path / "lake" / row["media_path"]).read_bytes()
        expected = video(row["story_id"]) if row["media_type"] == "VIDEO" else png(row["story_id"])
        assert data == expected
        assert row["media_path"].endswith(".mp4" if row["media_type"] == "VIDEO" else ".png")


def _refuse_one(story_id: str, response: Response) -> object:
    def fn(request: Request, own: Answer) -> Response:
        return response if request.params["media"] == story_id else own()

    return fn


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ((404, {"Content-Type": "text/plain"}, b"Not Found"), "HTTP 404"),
        ((200, {"Content-Type": "text/html"}, b"<html>login</html>"), "not an image or video"),
        ((403, {"Content-Type": "text/plain"}, b"URL signature expired"), "expired"),
    ],
)
def test_a_failed_download_keeps_the_capture_and_is_reported(
    sim: SimulatorServer, tmp_path: Path, answer: Response, why: str
) -> None:
    """One story's media answered badly: every row is stored, that story's media_path is null, the
    report names it and why; the next run (the CDN well again) archives it."""
    victim = sim.simulator.world.live_stories("NPI")[0].id
    remove = sim.simulator.override("cdn", _refuse_one(victim, answer))  # type: ignore[arg-type]
    report = run(sim, tmp_path)
    assert report.ok
    npi = next(a for a in report.accounts if a.account == "NPI")
    assert why in npi.media_failed[victim]
    assert any(victim in w and why in w for w in npi.warnings)
    rows = stored(tmp_path)
    assert rows.height == live_count(sim)
    assert rows.filter(pl.col("story_id") == victim)["media_path"].to_list() == [None]
    assert rows.filter(pl.col("story_id") != victim)["media_path"].null_count() == 0

    remove()
    again = run(sim, tmp_path)
    assert next(a for a in again.accounts if a.account == "NPI").media_archived == 1
    latest = stored(tmp_path).filter(pl.col("run_id") == again.run_id)
    assert latest["media_path"].null_count() == 0


def test_links_that_expired_before_the_download(sim: SimulatorServer, tmp_path: Path) -> None:
    """The CDN's own expiry (links handed out already expired): every story reported, none lost."""
    sim.simulator.media_link_ttl = timedelta(minutes=-1)
    report = run(sim, tmp_path)
    assert report.ok
    failed = {k: v for a in report.accounts for k, v in a.media_failed.items()}
    assert len(failed) == live_count(sim)
    assert all("expired" in why for why in failed.values())
    assert stored(tmp_path).height == live_count(sim)
    assert media_files(tmp_path) == []


def test_an_oversized_video_is_refused_and_images_still_archived(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    """A cap below the videos' size: videos are refused (reported), images archived, rows all kept."""
    report = run(sim, tmp_path, IG_MEDIA_MAX_MB="0.01")  # 10 KB: images fit, 48 KB videos do not
    assert report.ok
    failed = {k: v for a in report.accounts for k, v in a.media_failed.items()}
    assert len(failed) == videos(sim)
    assert all("larger than" in why for why in failed.values())
    assert not any(p.suffix == ".mp4" for p in media_files(tmp_path))
    assert len([p for p in media_files(tmp_path) if p.suffix == ".png"]) >= live_count(
        sim
    ) - videos(sim)
    assert stored(tmp_path).height == live_count(sim)


def test_archive_off(sim: SimulatorServer, tmp_path: Path) -> None:
    """IG_ARCHIVE_MEDIA=false: no download, no media folder, media_path null."""
    report = run(sim, tmp_path, IG_ARCHIVE_MEDIA="false")
    assert report.ok
    assert sim.simulator.stats.by_route["cdn"] == 0
    assert media_files(tmp_path) == []
    assert stored(tmp_path)["media_path"].null_count() == live_count(sim)


def test_no_signed_link_in_any_output_or_file(sim: SimulatorServer, tmp_path: Path) -> None:
    """The CLI run with failing and working downloads: no piece of a signed link in stdout (the
    JSON report), stderr (the log) or any file of the lake."""
    victim = sim.simulator.world.live_stories("NPI")[0].id
    sim.simulator.override(
        "cdn",
        _refuse_one(victim, (404, {"Content-Type": "text/plain"}, b"gone")),  # type: ignore[arg-type]
    )
    accounts = write_accounts(tmp_path / "accounts.toml")
    env = env_for(sim, tmp_path, accounts, LOG_FORMAT="json")
    result = run_cli(["run", "--all", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert victim in result.stdout  # the failure is reported ...
    texts = [result.stdout, result.stderr]
    for path in (tmp_path / "lake").rglob("*"):
        if path.suffix == ".parquet":  # compressed: read its values back as text
            texts.append(pl.read_parquet(path).write_csv())
        elif path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert len(texts) > 10
    for text in texts:
        for piece in SIGNED:
            assert piece not in text  # ... and no link with it


def test_downloads_run_concurrently_within_the_bound(sim: SimulatorServer, tmp_path: Path) -> None:
    """With IG_MEDIA_CONCURRENCY=2 the first two downloads meet at a barrier (they could not if
    downloads ran one after another), and never more than two are in flight."""
    meet = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    state = {"seen": 0, "in_flight": 0, "most": 0}

    def fn(request: Request, own: Answer) -> Response:
        with lock:
            state["seen"] += 1
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            first_two = state["seen"] <= 2
        try:
            if first_two:
                meet.wait()  # BrokenBarrierError (a 500, reported) if the other never comes
            return own()
        finally:
            with lock:
                state["in_flight"] -= 1

    sim.simulator.override("cdn", fn)
    report = run(sim, tmp_path, IG_MEDIA_CONCURRENCY="2", IG_MAX_CONCURRENT_ACCOUNTS="1")
    assert report.ok
    assert not any(a.media_failed for a in report.accounts)
    assert state["most"] == 2


class _Unsized(BaseHTTPRequestHandler):
    """A CDN that sends a body without Content-Length (HTTP/1.0, ended by closing)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.end_headers()
        for _ in range(64):
            self.wfile.write(b"\0" * 16384)  # 1 MB in all

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""


def test_a_body_without_length_is_stopped_at_the_cap() -> None:
    """A body with no Content-Length is read until it passes the cap, then refused."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unsized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    async def fetch(max_bytes: int) -> Media:
        async with MediaFetcher(max_bytes=max_bytes) as fetcher:
            return await fetcher.fetch(f"http://127.0.0.1:{server.server_address[1]}/v.mp4")

    try:
        with pytest.raises(MediaError, match="download stopped"):
            asyncio.run(fetch(100_000))
        media = asyncio.run(fetch(2 * MB))
        assert media.size == MB
        assert media.read() == b"\0" * MB
        media.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_stalled_download_is_cut_off_and_the_rows_are_stored(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    """One story's CDN answer never comes within the run: the archive gives up on it at its share
    of the budget, and every row is stored (the story reported, tried again next run)."""
    victim = sim.simulator.world.live_stories("NPI")[0].id
    release = threading.Event()

    def stall(request: Request, own: Answer) -> Response:
        if request.params["media"] == victim:
            release.wait(timeout=30)
        return own()

    sim.simulator.override("cdn", stall)
    try:
        report = run(sim, tmp_path, IG_RUN_BUDGET_SECONDS="4")
    finally:
        release.set()
    assert report.ok
    npi = next(a for a in report.accounts if a.account == "NPI")
    assert "time budget" in npi.media_failed[victim]
    assert stored(tmp_path).height == live_count(sim)
