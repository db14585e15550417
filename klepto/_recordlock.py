"""The writer lock of a record file shared by processes: ``flock`` on ``<file>.lock``.

The lock file is opened with ``O_NOFOLLOW`` (a symbolic link planted at its name is
refused, never written through) and locked with ``flock(LOCK_EX)``, which the system
releases when the holder dies. A lock file deleted while someone waited for it (an
archive being dropped) is detected after locking (its link count is 0) and the new one
at the same name is locked instead, so two processes never hold different lock files.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the portable (slower) lock in exclusive()
    fcntl = None  # type: ignore[assignment]

__all__ = ["OPEN_FLAGS", "exclusive", "lock_path", "locked_live", "symlink_refused"]

# O_NONBLOCK: a FIFO planted at the name must not hang the open (no effect on regular files).
OPEN_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
)


def symlink_refused(path: str) -> OSError:
    return OSError(errno.ELOOP, "refusing to open a symbolic link (it could point anywhere)", path)


def _open_lock(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_refused(path) from None
        raise


def locked_live(fd: int) -> bool:
    """Lock ``fd``; True if its file is still the lock file (not deleted meanwhile)."""
    assert fcntl is not None
    fcntl.flock(fd, fcntl.LOCK_EX)
    if os.fstat(fd).st_nlink:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def lock_path(path: str) -> int:
    """A descriptor of the lock file ``path``, locked (a deleted lock file is recreated)."""
    while True:
        fd = _open_lock(path)
        if locked_live(fd):
            return fd
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the writer lock of the record file ``path`` (as a turn does) for a block."""
    if fcntl is None:  # pragma: no cover - no flock on this platform
        from klepto._fs import InterProcessLock

        with InterProcessLock(os.fspath(path) + ".lock"):
            yield
        return
    fd = lock_path(os.fspath(path) + ".lock")
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock
