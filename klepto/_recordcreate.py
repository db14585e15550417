"""Creating, claiming, recovering and replacing record files.

* A writer *claims* a file first: at most one writer per file in this process (a registry)
  and across processes (an OS lock on ``<file>.lock``, released by the OS if the holder
  dies).
* A new file is built beside its final name (``mkstemp``: mode 0o600, never a planted
  symlink) and published with ``os.replace``, so no one ever sees a half-created file; in
  durable mode the directory is fsynced afterwards.
* A writer opening a file after a crash truncates the torn tail and re-points the commit
  slots at the last valid full commit (sealed records after it are found by walking).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from klepto import _recordformat as fmt
from klepto._fs import TEMP_PREFIX, InterProcessLock, fsync_dir
from klepto._recordack import retract_note
from klepto._recordindex import FrameIndex
from klepto._recordscan import Located, State, intact_commit_after
from klepto._recordwriter import Writer, pwrite_all, sync  # type: ignore[attr-defined]
from klepto.errors import ArchiveClosedError, CorruptRecordError, KleptoError, LockedError

logger = logging.getLogger("klepto.records")

_writers: set[str] = set()
_writers_guard = threading.Lock()


class RecordFileClosed(ArchiveClosedError):
    """The record file is closed."""


class RecordFileReadOnly(KleptoError, io.UnsupportedOperation):
    """A write was attempted on a record file opened for reading."""


class RecordFileNotWritable(RecordFileReadOnly, PermissionError):
    """A write was attempted on a record file this process may not write (its mode, owner or
    file system refuses): a ``PermissionError``, so callers need not know klepto's types."""


class RecordFileLocked(LockedError):
    """Another writer, in this process or another, has the record file open for writing."""


class WriterClaim:
    """The right to write one file: an in-process registry entry plus the OS lock."""

    def __init__(self, path: str, *, os_lock: bool, timeout: float) -> None:
        self.key = os.path.realpath(path)
        self.pid = os.getpid()
        self._lock: InterProcessLock | None = None
        with _writers_guard:
            if self.key in _writers:
                raise RecordFileLocked(f"{path} is already open for writing in this process")
            _writers.add(self.key)
        if not os_lock:
            return
        lock = InterProcessLock(f"{path}.lock", thread_local=False)
        try:
            lock.acquire(timeout=timeout)
        except LockedError:
            self._unregister()
            raise RecordFileLocked(
                f"{path} is already open for writing by another process"
            ) from None
        except BaseException:
            self._unregister()
            raise
        self._lock = lock

    def _unregister(self) -> None:
        with _writers_guard:
            _writers.discard(self.key)

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None and os.getpid() == self.pid:
            lock.release()
        self._unregister()


def create_page(header: fmt.FileHeader) -> bytes:
    """The first page of a new file: the header and two empty commit slots."""
    page = bytearray(fmt.DATA_START)
    page[: fmt.HEADER_SIZE] = header.encode()
    slot = fmt.EMPTY_SLOT.encode()
    for offset in fmt.SLOT_OFFSETS:
        page[offset : offset + len(slot)] = slot
    return bytes(page)


def format_of(header: fmt.FileHeader) -> dict[str, int]:
    """The format options that made ``header`` (to create a file just like it)."""
    return {
        "frame_size": header.frame_size,
        "codec": header.codec,
        "level": header.level,
        "fanout": header.fanout,
        "dictionary_size": header.dictionary_size,
    }


def create_file(
    path: str,
    options: dict[str, int],
    *,
    durable: bool,
    clock: Callable[[], int],
    fill: Callable[[Writer], None],
    encoding: str = "utf-8",
) -> int:
    """Build a new file beside ``path``, ``fill`` it, publish it; return an O_RDWR fd to it."""
    header = fmt.FileHeader.new(**options)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=directory)
    try:
        pwrite_all(fd, create_page(header), 0)
        empty = State(index=FrameIndex(header.fanout))
        fill(Writer(fd, temp, header, empty, durable=False, clock=clock, encoding=encoding))
        if durable:
            sync(fd)
        os.replace(temp, path)
        retract_note(path + ".lock")  # it replaced a file: its readers must look again
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if durable:
        fsync_dir(directory)
    return fd


def recover(fd: int, path: str, located: Located, *, durable: bool, header: fmt.FileHeader) -> None:
    """Truncate a torn tail and point both commit slots at the last valid full commit.

    Raises :class:`CorruptRecordError` instead when an intact commit follows the tail
    (then the tail is damage, not a torn write, and truncating would lose commits).
    """
    if not (located.problems or located.tail_bytes):
        return
    state = located.state
    later = intact_commit_after(fd, header, state, located.size)
    if later is not None:
        raise CorruptRecordError(
            f"damaged block after commit {state.seq}, followed by an intact commit at"
            f" offset {later}: not truncating the file (salvage it)",
            path=path,
            offset=state.end,
        )
    reasons = list(located.problems)
    if located.tail_bytes:
        reasons.append("an incomplete commit after it (torn tail)")
    logger.warning(
        "%s: recovered to commit %d (%d records); dropped %d bytes after offset %d: %s",
        path,
        state.seq,
        state.count,
        located.tail_bytes,
        state.end,
        "; ".join(reasons),
    )
    os.ftruncate(fd, state.end)
    slot = state.slot  # the last full commit: pointers never name a sealed record
    for offset in fmt.SLOT_OFFSETS:
        pwrite_all(fd, slot.encode(), offset)
    if durable:
        sync(fd)


class Replacement:
    """A new file beside ``target``, filled by the caller and then moved over it."""

    def __init__(self, target: str, options: dict[str, int], opener: Callable[[str], Any]) -> None:
        self.target = target
        self.directory = os.path.dirname(os.path.abspath(target))
        fd, self.temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=self.directory)
        try:
            try:
                pwrite_all(fd, create_page(fmt.FileHeader.new(**options)), 0)
            finally:
                os.close(fd)
            self.file = opener(self.temp)
        except BaseException:
            os.unlink(self.temp)
            raise

    def publish(self, *, durable: bool) -> None:
        """Commit the new file and atomically put it in the target's place."""
        self.file.commit()
        if durable:
            self.file.sync()
        self.file.close()
        os.replace(self.temp, self.target)
        retract_note(self.target + ".lock")  # readers of the file replaced: look again
        if durable:
            fsync_dir(self.directory)

    def abandon(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)
