"""A local folder as a backend: a file lock + temp file + fsync + atomic rename."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ig_story_metrics.storage.backend import ConflictError, StorageError


class LocalBackend:
    """A local folder. Generation = the file's inode and mtime; writes are temp file + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, key: str) -> str:
        return str(self.root / key)

    def _generation(self, path: Path) -> int:
        try:
            st = path.stat()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        return (st.st_ino << 64) | st.st_mtime_ns

    def read(self, key: str) -> tuple[bytes | None, int]:
        path = self.root / key
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                return handle.read(), (st.st_ino << 64) | st.st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return None, 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None

    def write(self, key: str, data: bytes, *, if_generation: int) -> None:
        path = self.root / key
        if self._generation(path) != if_generation:
            raise ConflictError(f"{path} changed while it was being merged")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
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

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Exclusive flock on a hidden `.{name}.lock` beside the file (released by the kernel when
        a holder dies). Temp files left by a writer that was killed mid-write are removed here:
        every writer of `key` holds this lock, so any temp file found is an orphan."""
        path = self.root / key
        lock_path = path.parent / f".{path.name}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a+b")
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                for orphan in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
                    with contextlib.suppress(OSError):
                        orphan.unlink()
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        """Nothing to release."""


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
