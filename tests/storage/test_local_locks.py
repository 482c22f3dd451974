"""The local folder's locks and debris: lock waits end with the run's deadline, lock files do not
pile up, a killed writer's temp files go with the next write of the account, a live writer's stay.

Locks are held by real other processes (`conftest.hold_lock`), as a stuck or concurrent run would.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from ig_story_metrics.clock import Deadline
from ig_story_metrics.model.snapshot import SNAPSHOTS
from ig_story_metrics.storage import ConflictError, StorageError, locks
from ig_story_metrics.storage.layout import snapshot_key
from ig_story_metrics.storage.local import LocalBackend
from tests.storage.conftest import hold_lock, lock_of
from tests.storage.writer import ACCOUNT, DAY, ROWS, open_test_lake, snapshot_frame

TODAY = Path(snapshot_key(ACCOUNT, DAY))
EARLIER = DAY - timedelta(days=5)  # the account's last day written before DAY (no runs between)
LAST_DAY = Path(snapshot_key(ACCOUNT, EARLIER))


def hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def test_writes_leave_no_lock_or_temp_file(tmp_path: Path) -> None:
    """After appends on two days and two accounts, no hidden file is left in the lake."""
    lake = open_test_lake(str(tmp_path))
    for day in (DAY, DAY + timedelta(days=1)):
        lake.append(SNAPSHOTS, ACCOUNT, day, snapshot_frame("run-a"))
        lake.append(SNAPSHOTS, "LT", day, snapshot_frame("run-a", account="LT"))
    assert hidden(tmp_path) == []


def test_a_killed_writers_debris_on_another_day_goes_with_the_next_write(tmp_path: Path) -> None:
    """The orphan temp file and stale lock file (its writer died) of the last day written are
    removed by the account's next write, days later; that day's data and unrelated files stay."""
    lake = open_test_lake(str(tmp_path))
    for day in (EARLIER - timedelta(days=3), EARLIER):
        lake.append(SNAPSHOTS, ACCOUNT, day, snapshot_frame("run-y"))
    folder = tmp_path / LAST_DAY.parent
    (folder / f".{LAST_DAY.name}.k1ll3d.tmp").write_bytes(b"half a parquet file")
    lock_of(tmp_path, LAST_DAY).write_bytes(b"")
    (folder / "notes.txt").write_text("keep me")
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-t"))
    assert hidden(tmp_path) == []
    assert (folder / "notes.txt").read_text() == "keep me"
    assert lake.read(SNAPSHOTS, ACCOUNT, EARLIER).height == ROWS


def test_a_writers_own_orphans_go_even_when_its_sibling_folders_cannot_be_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep of the sibling days fails (the account's folder cannot be listed: mocked, since
    root lists any folder): the temp files of the file being written, and the other debris of its
    own folder, are removed all the same."""
    lake = open_test_lake(str(tmp_path))
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"))
    folder = tmp_path / TODAY.parent
    (folder / f".{TODAY.name}.k1ll3d.tmp").write_bytes(b"half a parquet file")
    (folder / ".other.parquet.d3ad.tmp").write_bytes(b"another dead writer's")
    listing = os.scandir

    def refuse_the_days(path: str | os.PathLike[str]) -> object:
        if Path(path) == folder.parent:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", refuse_the_days)
    lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-b"))
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    assert lake.read(SNAPSHOTS, ACCOUNT, DAY).height == 2 * ROWS


def test_the_debris_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    """A temp file whose writer still holds its lock is not an orphan: it stays."""
    lake = open_test_lake(str(tmp_path))
    lake.append(SNAPSHOTS, ACCOUNT, EARLIER, snapshot_frame("run-y"))
    busy = tmp_path / LAST_DAY.parent / f".{LAST_DAY.name}.st1ll.tmp"
    busy.write_bytes(b"being written")
    with hold_lock(lock_of(tmp_path, LAST_DAY)):
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-t"))
        assert busy.exists()
        assert lock_of(tmp_path, LAST_DAY).exists()


def test_a_lock_held_past_the_deadline_is_a_storage_error_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """Another process holds the day's lock: append gives up when the deadline passes, with a
    one-line error naming the file and the lock; nothing is written."""
    lake = open_test_lake(str(tmp_path))
    with hold_lock(lock_of(tmp_path, TODAY)), pytest.raises(StorageError) as caught:
        lake.append(SNAPSHOTS, ACCOUNT, DAY, snapshot_frame("run-a"), deadline=Deadline(0.3))
    message = str(caught.value)
    assert str(tmp_path / TODAY) in message
    assert str(lock_of(tmp_path, TODAY)) in message
    assert "time budget" in message
    assert "\n" not in message
    assert not (tmp_path / TODAY).exists()


def test_the_lock_admits_one_holder_at_a_time_while_holders_remove_it(tmp_path: Path) -> None:
    """8 threads taking and releasing (and so removing) the same lock file 150 times each: never
    two holders at once, and no lock file left."""
    path = tmp_path / ".x.lock"
    inside: list[int] = []
    overlaps: list[int] = []
    guard = threading.Lock()

    def work() -> None:
        for _ in range(150):
            fd = locks.acquire(path, None, "x")
            try:
                with guard:
                    inside.append(1)
                    if len(inside) > 1:
                        overlaps.append(len(inside))
                os.sched_yield()
                with guard:
                    inside.pop()
            finally:
                locks.release(fd, path)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert overlaps == []
    assert not path.exists()


def test_move_never_overwrites_and_checks_the_generation(tmp_path: Path) -> None:
    """The quarantine move refuses an existing target and a changed source (ConflictError)."""
    backend = LocalBackend(tmp_path)
    backend.write("a/f.parquet", b"bad", if_generation=0)
    backend.write("a/f.parquet.corrupt-1", b"earlier", if_generation=0)
    _, generation = backend.read("a/f.parquet")
    with pytest.raises(ConflictError):
        backend.move("a/f.parquet", "a/f.parquet.corrupt-1", if_generation=generation)
    with pytest.raises(ConflictError):
        backend.move("a/f.parquet", "a/f.parquet.corrupt-2", if_generation=generation + 1)
    assert backend.read("a/f.parquet.corrupt-1")[0] == b"earlier"
    backend.move("a/f.parquet", "a/f.parquet.corrupt-2", if_generation=generation)
    assert backend.read("a/f.parquet") == (None, 0)
    assert backend.read("a/f.parquet.corrupt-2")[0] == b"bad"
