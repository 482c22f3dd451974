"""A local folder as a backend: a file lock + temp file + fsync + atomic rename.

Hidden files beside the data: `.{name}.lock` while a writer holds `name` (removed on release, see
`storage/locks.py`), and `.{name}.{random}.tmp` while a writer writes it. A writer killed
mid-write leaves its temp file; the next write to the same folder or to the folder just before or
after it by name (the account's previous or next day written) removes it, once it holds that
file's lock, so no temp file outlives the next write of the account to that day or a later one.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ig_story_metrics.clock import Deadline
from ig_story_metrics.storage import locks
from ig_story_metrics.storage.backend import ConflictError, StorageError

MAX_WRITERS = 4
HIDDEN = re.compile(r"^\.(?P<name>.+?)\.(?:lock|[^.]+\.tmp)$")


class LocalBackend:
    """A local folder. Generation = the file's inode and mtime; writes are temp file + rename.

    `writers`: one per CPU (at most `MAX_WRITERS`). A write here waits on nothing but the CPU
    and the disk: more threads than CPUs only add switches, each handing the interpreter over
    (a run of 1,000 accounts x 20 stories on 2 CPUs: 6 writer threads made 180,000 context
    switches, 2 made 110,000; 8 interleaved pairs of runs took 16.7-21.9 s of CPU with 6, median
    18.6 s, and 15.5-19.1 s with 2, median 16.8 s). `inline`: a run writes here on its own
    thread while the writes do not wait (`jobs/capture.Writes`): fewer switches still."""

    def __init__(self, root: Path, *, writers: int | None = None) -> None:
        self.root = root
        self.writers = writers or max(1, min(MAX_WRITERS, os.cpu_count() or 1))
        self.inline = True

    def url(self, key: str) -> str:
        return str(self.root / key)

    def _generation(self, path: Path) -> int:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        return (st.st_ino << 64) | st.st_mtime_ns

    def read(self, key: str, *, deadline: Deadline | None = None) -> tuple[bytes | None, int]:
        path = self.root / key
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None, 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:  # unbuffered: a buffered file object asks the kernel three times for the size
            st = os.fstat(fd)
            chunks = [os.read(fd, st.st_size + 1)]
            while chunks[-1]:
                chunks.append(os.read(fd, 1 << 20))
            return b"".join(chunks), (st.st_ino << 64) | st.st_mtime_ns
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def write(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        if_generation: int,
        deadline: Deadline | None = None,
        content_type: str | None = None,  # a file has none: its extension says what it holds
    ) -> None:
        path = self.root / key
        if self._generation(path) != if_generation:
            raise ConflictError(f"{path} changed while it was being merged")
        try:
            fd, tmp = _temp_file(path)
            try:
                with os.fdopen(fd, "wb") as handle:
                    if isinstance(data, bytes):
                        handle.write(data)
                    else:
                        data.seek(0)
                        shutil.copyfileobj(data, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                _publish(tmp, path, create_only=if_generation == 0)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None

    def children(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        try:
            return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from None

    def move(
        self, key: str, new_key: str, *, if_generation: int, deadline: Deadline | None = None
    ) -> None:
        """Rename in place (the same bytes, the same inode); never over an existing file."""
        path, target = self.root / key, self.root / new_key
        if self._generation(path) != if_generation:
            raise ConflictError(f"{path} changed before it could be moved aside")
        try:
            try:
                os.link(path, target)  # fails if the target exists
                os.unlink(path)
            except FileExistsError:
                raise ConflictError(f"{target} already exists") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if target.exists():  # a file system without hard links: we hold the lock
                    raise ConflictError(f"{target} already exists") from None
                os.rename(path, target)
            _fsync_dir(path.parent)
        except ConflictError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot move {path} aside: {exc.strerror or exc}") from None

    def keys(
        self,
        prefix: str,
        *,
        deadline: Deadline | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[str]:
        folder = self.root / prefix
        try:
            found = [
                path
                for top in _in_range(folder, start, end)
                for path in (top, *top.rglob("*"))  # a file's rglob is empty
                if path.is_file() and not path.name.startswith(".")
            ]
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from None
        names = sorted((path.relative_to(folder).as_posix(), path) for path in found)
        return [
            str(path.relative_to(self.root))
            for name, path in names
            if (start is None or name >= start) and (end is None or name < end)
        ]

    @contextlib.contextmanager
    def locked(
        self, key: str, *, deadline: Deadline | None = None, wait: bool = True
    ) -> Iterator[None]:
        """Exclusive lock on `.{name}.lock` beside the file, waited for until `deadline` (`wait`
        false: a `LockBusy` at once); then the debris of killed writers in this folder and its
        siblings is removed (see the module)."""
        path = self.root / key
        lock_path = path.parent / f".{path.name}.lock"
        _make_folder(path.parent, path)
        fd = locks.acquire(lock_path, deadline, str(path), wait=wait)
        try:
            sweep_siblings(self.root, path)
            yield
        finally:
            locks.release(fd, lock_path)

    def close(self) -> None:
        """Nothing to release."""


def sweep_siblings(root: Path, path: Path) -> None:
    """Remove the temp and lock files that dead writers left in `path`'s folder and in its
    nearest sibling folders by name (the previous and the next day that were written), for every
    file whose lock nobody holds, and `path`'s own temp files (its caller holds its lock: they are
    orphans). Each write sweeps the last day written before it, so a day's debris goes with the
    next write of the account, however many days the lake holds. One listing per folder: a run
    of 1,000 accounts sweeps 4,000 folders."""
    folder = path.parent
    with contextlib.suppress(OSError):  # its own folder first: a sibling that fails stops no more
        hidden = _hidden(folder)
        _unlink_all(folder, hidden.pop(path.name, []))
        for name in sorted(hidden):
            _clean_if_free(folder / name)
    with contextlib.suppress(OSError):
        for sibling in [] if folder == root else _neighbours(folder):
            if sibling != folder:
                for name in sorted(_hidden(sibling)):
                    _clean_if_free(sibling / name)


def _neighbours(folder: Path) -> list[Path]:
    """`folder` and the folders just before and after it in name order, beside it."""
    with os.scandir(folder.parent) as entries:
        names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    at = bisect.bisect_left(names, folder.name)
    return [folder.parent / name for name in names[max(at - 1, 0) : at + 2]]


def _clean_if_free(path: Path) -> None:
    """Remove `path`'s temp files and lock file if nobody holds its lock now."""
    lock_path = path.parent / f".{path.name}.lock"
    with contextlib.suppress(StorageError):
        fd = locks.try_acquire(lock_path)
        if fd is not None:
            try:
                _remove_temp_files(path)
            finally:
                locks.release(fd, lock_path)


def _hidden(folder: Path) -> dict[str, list[str]]:
    """The files that have temp or lock files in `folder`, each with its temp files' names."""
    found: dict[str, list[str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and (match := HIDDEN.match(entry.name)):
                temps = found.setdefault(match["name"], [])
                if not entry.name.endswith(".lock"):
                    temps.append(entry.name)
    return found


def _unlink_all(folder: Path, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


def _remove_temp_files(path: Path) -> None:
    """Remove `path`'s temp files (the caller holds its lock: they are orphans)."""
    with contextlib.suppress(OSError):
        for orphan in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                orphan.unlink()


def _publish(tmp: str, path: Path, *, create_only: bool) -> None:
    """Give the written temp file its name: replace what is there, or (`create_only`) only if the
    name is free: `os.link` fails on an existing name, so a concurrent creator loses cleanly."""
    if not create_only:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ConflictError(f"{path} exists already") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):
            raise
        if path.exists():  # a file system without hard links: the check, then the rename
            raise ConflictError(f"{path} exists already") from None
        os.replace(tmp, path)


def _in_range(folder: Path, start: str | None, end: str | None) -> list[Path]:
    """The entries of `folder` that can hold a key whose name below it sorts in [start, end):
    a folder of day folders is listed only within the days asked for. An entry named `c` holds
    `c` and `c/...`: none of them is below `start` only if `c/` is above it or begins it, and
    none is under `end` if `c` is not."""
    if not folder.is_dir():
        return []
    return [
        folder / name
        for name in sorted(os.listdir(folder))
        if (end is None or name < end)
        and (start is None or name >= start or f"{name}/" > start or start.startswith(f"{name}/"))
    ]


def _make_folder(folder: Path, path: Path) -> None:
    """Create `folder` (and its parents) unless it is there: one `stat` when it is, where
    `mkdir(exist_ok=True)` makes two calls, twice per file written."""
    if os.path.isdir(folder):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _temp_file(path: Path) -> tuple[int, str]:
    """A new hidden temp file beside `path` (its folder made first if it is missing)."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
