"""Lock files that never pile up: `flock` on a hidden file, removed by its holder on release.

A holder unlinks the lock file *before* unlocking it. A writer that was waiting on that file then
holds a lock on a file that is gone, so after every `flock` the writer checks that the path still
names the very file it locked, and starts again if not. The holder of the file at the path is
therefore the only holder. A writer killed while holding the lock leaves the file behind (the
kernel releases the lock itself): the next writer of that file, or a sweep of its folder
(`try_acquire`), takes it and removes it the same way.

Waits poll with `LOCK_NB` until the run's `Deadline`, so a lock held by a stuck process ends in a
`StorageError` instead of a hang.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from ig_story_metrics.clock import Deadline
from ig_story_metrics.errors import StorageError
from ig_story_metrics.storage.backend import LockBusy

FIRST_PAUSE_SECONDS = 0.005
MAX_PAUSE_SECONDS = 0.1


def acquire(lock_path: Path, deadline: Deadline | None, what: str, *, wait: bool = True) -> int:
    """Hold `lock_path` (an open descriptor), waiting until the deadline (`wait` false: not at
    all, a `LockBusy`); `what` names the file the lock protects, for the error."""
    pause = FIRST_PAUSE_SECONDS
    waited = 0.0
    while True:
        fd = try_acquire(lock_path)
        if fd is not None:
            return fd
        if not wait:
            raise LockBusy(f"cannot write {what} now: another writer holds its lock ({lock_path})")
        if deadline is not None and not deadline.allows(pause):
            raise StorageError(
                f"cannot write {what}: another writer held its lock ({lock_path}) for the rest "
                f"of the run's time budget (waited {waited:.1f} s)"
            )
        time.sleep(pause)
        waited += pause
        pause = min(pause * 2, MAX_PAUSE_SECONDS)


def try_acquire(lock_path: Path) -> int | None:
    """Hold `lock_path` now if nobody does (creating it if needed), else None."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _names(lock_path, fd):
            return fd
        os.close(fd)  # its holder removed it as we took it: take the one at the path now


def release(fd: int, lock_path: Path) -> None:
    """Remove the lock file, then unlock it (in this order: see the module docstring)."""
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _names(lock_path: Path, fd: int) -> bool:
    """Whether `lock_path` still names the file open as `fd`."""
    try:
        current = os.stat(lock_path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)
