"""Per-key exclusive locks: among the threads of a process, and across processes.

:class:`KeyLocks` holds one ``threading.Lock`` per key while somebody holds or waits for it.
:class:`FileKeyLocks` locks one byte of a lock file per key (the byte's offset comes from
the key's stable digest), so different keys never wait for each other, any number of keys
share one file that stays empty, and the operating system releases a dead holder's locks.
It uses Linux open-file-description locks (``F_OFD_SETLKW``), which exclude threads of one
process as well as other processes; elsewhere it falls back to one lock for the whole file
(correct, but then different keys of one archive wait for each other across processes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import threading
from collections.abc import Hashable, Iterator
from typing import Any

from klepto._canonical import stable_bytes
from klepto._fs import FILE_MODE, InterProcessLock

__all__ = ["FileKeyLocks", "KeyLocks", "key_offset"]

_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
# struct flock: l_type, l_whence, l_start, l_len, l_pid (native alignment, as the C struct).
_FLOCK = "hhqqi"
_OFFSET_MASK = (1 << 62) - 1  # offsets stay far below the largest off_t


class KeyLocks:
    """One exclusive lock per key, among the threads of this process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[Hashable, list[Any]] = {}  # key -> [lock, holders and waiters]

    @contextlib.contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._held.get(key)
            if entry is None:
                entry = self._held[key] = [threading.Lock(), 0]
            entry[1] += 1
        lock: threading.Lock = entry[0]
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
            with self._guard:
                entry[1] -= 1
                if not entry[1]:  # nobody else wants it: forget it (keys are unbounded)
                    del self._held[key]


def key_offset(key: Any) -> int:
    """The byte of a lock file that stands for ``key`` (the same in every process)."""
    digest = hashlib.blake2b(stable_bytes(key), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _OFFSET_MASK


class FileKeyLocks:
    """One exclusive lock per key, shared with every process that uses the file at ``path``.

    The file is created on first use (mode ``mode``) and never written.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = FILE_MODE) -> None:
        self.path = os.fspath(path)
        self.mode = mode
        self._whole: InterProcessLock | None = None
        self._threads = KeyLocks()

    @contextlib.contextmanager
    def hold(self, key: Any) -> Iterator[None]:
        if _OFD_SETLKW is None:
            with self._threads.hold(key), self._whole_file():
                yield
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.mode)
        try:
            # An open-file-description lock belongs to this descriptor: threads of this
            # process exclude each other too, and closing the descriptor releases it.
            offset = key_offset(key)
            fcntl.fcntl(
                fd, _OFD_SETLKW, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
            )
            yield
        finally:
            os.close(fd)

    def _whole_file(self) -> InterProcessLock:
        if self._whole is None:
            # Owned by the object, not a thread: an async caller enters and leaves the lock
            # in different worker threads. Threads of this process are kept apart per key
            # by ``_threads``; different keys may share the hold.
            self._whole = InterProcessLock(self.path, mode=self.mode, thread_local=False)
        return self._whole

    def remove(self) -> None:
        """Delete the lock file (when its archive is dropped)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FileKeyLocks, (self.path, self.mode))
