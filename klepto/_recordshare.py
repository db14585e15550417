"""Record files that many processes keep open and take turns writing.

A :class:`~klepto.records.RecordFile` opened for writing owns the writer lock until it is
closed, so a file has one writer at a time for as long as it is open. A
:class:`SharedRecordFile` is what the file archive needs instead: every process keeps the
file open as a *reader*, and a process that wants to write takes a short **turn**::

    with shared.turn() as change:     # OS lock; catch up with other writers' commits
        ...                           # change says which records are new to this object
        shared.append(record)
        shared.commit()
    # lock released; uncommitted records (an exception) are discarded

A turn costs one ``flock`` pair and one ``fstat`` when nobody else wrote since this
object's last turn: the writer state is kept between turns and reused while the file is
unchanged. Otherwise the new commits are located from the commit pointers (never by
replaying the file) and a torn tail left by a killed writer is truncated, exactly as when a
``RecordFile`` is opened for writing.

Readers call :meth:`SharedRecordFile.poll` before reading: while the lock file's note is
unchanged nothing was acknowledged (:mod:`klepto._recordwatch`); otherwise it notices new
commits, and a file replaced (its link count drops to 0) or deleted, which it reopens (a
new empty file if none is there). Files and the lock file are opened with ``O_NOFOLLOW``:
a symbolic link planted at either name is refused, never written through. A child process
created by ``fork`` takes its own turns (the inherited lock handle is never used).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from klepto import _recordformat as fmt
from klepto._recordaccess import holds_point, scan_records
from klepto._recordack import Note, missing, write_note, write_note_of
from klepto._recordcreate import (
    RecordFileClosed,
    RecordFileNotWritable,
    RecordFileReadOnly,
    create_file,
    recover,
)
from klepto._recordfollow import (
    advance,
    commit_point_of,
    frame_offset,
    frame_offsets,
    read_record,
)
from klepto._recordlock import OPEN_FLAGS, exclusive, symlink_refused
from klepto._recordread import FrameReader
from klepto._recordscan import InvalidRecordFile, State, locate, pread  # type: ignore[attr-defined]
from klepto._recordturnlock import HAS_FLOCK, TurnLock
from klepto._recordturnlock import open_files as _open_files
from klepto._recordwatch import NoteWatch
from klepto._recordwriter import Writer
from klepto.errors import CorruptRecordError
from klepto.records import DEFAULT_FRAME_SIZE, RecordFile

__all__ = [
    "Change",
    "CommitPoint",
    "SharedRecordFile",
    "commit_point_of",
    "exclusive",
    "frame_offset",
    "frame_offsets",
]

logger = logging.getLogger("klepto.records")

_OPEN_FLAGS = OPEN_FLAGS
_READ_ONLY_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS}
_SLACK = 512  # read this much past a frame's nominal size: one read covers most frames


class Change(NamedTuple):
    """What :meth:`SharedRecordFile.poll` or a turn found: records ``start .. count - 1``
    are new to this object; ``replaced`` means the file is another one (read it all).
    ``records``, when not ``None``, are those new records, read while catching up."""

    replaced: bool
    start: int
    count: int  # type: ignore[assignment]
    records: list[bytes] | None = None


class CommitPoint(NamedTuple):
    """Identifies one commit of one file (to check later that a file still holds it);
    ``timestamp_ns`` is 0 for a sealed record, which carries no time."""

    file_id: str
    seq: int
    offset: int
    count: int  # type: ignore[assignment]
    timestamp_ns: int


class SharedRecordFile(TurnLock, RecordFile):
    """A record file read by many processes, each of which may take turns writing it.

    Created (empty, with ``metadata``) if ``path`` does not exist, unless ``create=False``
    (then ``FileNotFoundError``). ``lock=False`` skips the inter-process lock: the caller
    guarantees that one process at a time takes turns. ``strict=True`` refuses
    a file whose last pointed-to commit is damaged (:class:`CorruptRecordError`) instead
    of reading it as of the commit before, and a turn never truncates such a file. The
    lock file is ``path + '.lock'`` (the same one ``RecordFile`` writers use). Format
    options are those of :class:`RecordFile`; compression is off by default.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "flush",
        metadata: bytes | None = None,
        strict: bool = False,
        create: bool = True,
        lock: bool = True,
        compression: str | None = None,
        level: int | None = None,
        frame_size: int = DEFAULT_FRAME_SIZE,
        dictionary_size: int = 0,
        clock: Callable[[], int] = time.time_ns,
        sealed_commits: bool = False,
    ) -> None:
        self._lock_path = os.fspath(path) + ".lock"
        self._lock_fd: int | None = None
        self._strict = strict
        self._create = create
        self._use_os_lock = lock
        self._fd_writable = False
        self._spare: Writer | None = None
        self._in_turn = False
        self._turn_depth = 0
        self._noted = b""
        self._turn_mark: tuple[bytes, int] = (b"", 0)
        self._watch = NoteWatch(self._lock_path) if lock and HAS_FLOCK else None
        super().__init__(
            path,
            "r",
            durability=durability,
            metadata=metadata,
            compression=compression,
            level=level,
            frame_size=frame_size,
            dictionary_size=dictionary_size,
            clock=clock,
            sealed_commits=sealed_commits,
        )
        _open_files.add(self)

    # --- opening ----------------------------------------------------------------------------
    def _open_fd(self, *, locked: bool = False) -> int:
        """The file at the path, opened (created if absent: ``locked`` says the caller holds
        the lock already, as a turn does, which must then stay held)."""
        fd = self._open_existing()
        if fd is not None:
            return fd
        if not self._create:
            raise FileNotFoundError(errno.ENOENT, "no such record file", self._path)
        # One creator; the others open what it published.
        with contextlib.nullcontext() if locked else self._os_lock():
            fd = self._open_existing()
            if fd is None:
                fd = create_file(
                    self._path,
                    self._format,
                    durable=self.durable,
                    clock=self._clock,
                    fill=self._fill_initial,
                )
                self._fd_writable = True
        return fd

    def _open_existing(self) -> int | None:
        """The file opened for reading and writing (reading only if that is refused)."""
        try:
            fd = os.open(self._path, os.O_RDWR | _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise symlink_refused(self._path) from None
            if exc.errno not in _READ_ONLY_ERRORS:
                raise
            fd = os.open(self._path, os.O_RDONLY | _OPEN_FLAGS)
            self._fd_writable = False
            return fd
        self._fd_writable = True
        return fd

    def _attach(self, fd: int) -> None:
        """Read the header and the last commit of ``fd`` (as a reader; nothing is repaired)."""
        note = self._note()  # before the file: what it says was written before it
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRecordFile("not a regular file", path=self._path, offset=0)
        head = pread(fd, fmt.DATA_START, 0)
        try:
            header = fmt.decode_header(head)
        except fmt.NotARecordFile as exc:
            raise InvalidRecordFile(str(exc), path=self._path, offset=0) from None
        located = locate(fd, self._path, header, head)
        self._judge(fd, header, located, note)
        self._header = header
        self._frame_read = fmt.BLOCK_SIZE + header.frame_size + _SLACK
        self._state = located.state
        self._reader = FrameReader(self._path, header, _weak_reader(self))
        self._identity = (info.st_dev, info.st_ino)
        self._writer = None
        self._spare = None
        self._fd = fd

    @property
    def read_only(self) -> bool:
        """True when this process may not write the file (opened read-only)."""
        return not self._fd_writable

    @property
    def commit_point(self) -> CommitPoint:
        """The last commit this object has seen."""
        return commit_point_of(self)  # type: ignore[no-any-return]

    def holds(self, point: CommitPoint) -> bool:
        """Whether this file contains the commit ``point`` (as of the last poll or turn)."""
        return holds_point(self, point)

    # --- direct record access (for an index that remembers where records are) ------------
    def frame_of(self, number: int) -> int:
        """File offset of the frame holding committed record ``number`` (or of the run of
        sealed records holding it)."""
        return frame_offset(self, number)

    def record_in_frame(self, number: int, offset: int) -> bytes | memoryview:
        """Record ``number`` from the frame at ``offset`` (from :meth:`frame_of`).

        One checked read, bypassing the record index and the frame cache (a random read
        of a large file would miss both). A large record comes back as a ``memoryview`` of
        the bytes read, not copied again.
        """
        return read_record(self, number, offset)

    def scan(self, start: int, stop: int) -> Iterator[bytes]:
        """Committed records ``start .. stop - 1``, read sequentially in large reads.

        For catching up with what other processes appended: a few reads cover many small
        commits, where ``records()`` reads each one-record frame on its own.
        """
        return scan_records(self, start, stop)

    # --- following other processes -------------------------------------------------------
    def poll(self) -> Change | None:
        """Catch up with commits made by others; ``None`` if there were none (and inside a
        turn, where this object is up to date)."""
        watch = self._watch
        if watch is not None and watch.quiet():
            return None  # no writer acknowledged a commit since this object caught up
        with self._lock:
            change = self._poll_file()
            if watch is not None and self._writer is None and self._fd is not None:
                watch.arm(Note(self._header.file_id, self._state.count, self._state.end))
            return change

    def _poll_file(self) -> Change | None:
        """:meth:`poll` by looking at the file itself (one ``fstat`` if nothing changed)."""
        fd = self._fd
        if fd is None:
            raise RecordFileClosed(f"record file {self._path} is closed")
        if self._writer is not None:
            return None
        info = os.fstat(fd)
        state = self._state
        if info.st_size == state.end and info.st_nlink:
            return None
        if info.st_nlink == 0:
            return self._reopen()
        self._check_size(info.st_size)
        head = pread(fd, fmt.DATA_START, 0)
        advanced = advance(self, fd, head, info.st_size)
        if advanced is not None:  # one pass: the new state and the new records
            self._state, records = advanced
            return Change(False, state.count, self._state.count, records)
        located = locate(fd, self._path, self._header, head, state, extend=False)
        if located.state.seq == state.seq:
            return None  # a commit being written (or a torn tail): nothing new yet
        self._state = located.state
        return Change(False, state.count, located.state.count)

    def _check_size(self, size: int) -> None:
        if size < self._state.end:
            raise CorruptRecordError(
                f"the file shrank below its last commit ({size} < {self._state.end} bytes)",
                path=self._path,
                offset=size,
            )

    def _reopen(self, *, locked: bool = False) -> Change:
        """Open the file now at the path (replaced, or deleted: then a new empty one)."""
        if self._watch is not None:
            self._watch.reset()  # its lock file may be a new one too
        old = self._fd
        fd = self._open_fd(locked=locked)
        try:
            self._attach(fd)
        except BaseException:
            os.close(fd)
            raise
        if old is not None:
            os.close(old)
        logger.debug("%s: the file was replaced; reopened it", self._path)
        return Change(True, 0, self._state.count)

    # --- turns ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def turn(self) -> Iterator[Change | None]:
        """Be this file's writer for the ``with`` block (see the module docstring).

        Yields what the catching up found (``None``: nothing new). Records not committed
        when the block ends are discarded. Nested turns join the outer one (and get
        ``None``). Other threads of this process wait for the turn to end (their polls do
        not: a poll sees what was acknowledged before it, and the turn is not yet).
        """
        change = self.start_turn()
        try:
            yield change
        finally:
            self.finish_turn()

    def start_turn(self) -> Change | None:
        """Take the writer role without reopening; pair it with :meth:`finish_turn`."""
        self._lock.acquire()
        try:
            if self._in_turn:
                self._turn_depth += 1
                return None
            self._check_open()
            if not self._fd_writable:
                raise RecordFileNotWritable(
                    errno.EACCES, "cannot write: this process may not write the file", self._path
                )
            self._acquire_os_lock()
            try:
                change = self._begin_turn()
            except BaseException:
                self._release_os_lock()
                raise
            assert self._writer is not None
            self._turn_mark = (self._header.file_id, self._writer.committed.seq)
            self._in_turn = True
            self._turn_depth = 1
            return change
        except BaseException:
            self._lock.release()
            raise

    def finish_turn(self) -> None:
        """End the turn: discard anything not committed, give up the writer role."""
        try:
            self._turn_depth -= 1
            if self._turn_depth == 0:
                self._in_turn = False
                try:
                    self._end_turn()
                finally:
                    self._release_os_lock()
        finally:
            self._lock.release()

    def _begin_turn(self) -> Change | None:
        fd = self._fd
        assert fd is not None
        change = None
        info = os.fstat(fd)
        if info.st_nlink == 0:
            change = self._reopen(locked=True)  # the turn's lock is held: it stays held
            fd = self._fd
            assert fd is not None
            info = os.fstat(fd)
        state = self._state
        if info.st_size == state.end and not self._lost(state):  # nothing new: no locate
            spare = self._spare
            if spare is not None and spare.committed is state:
                self._writer = spare  # nobody wrote since our last turn: reuse the writer
            else:
                self._writer = self._new_writer(fd, state)
            return change
        return self._catch_up(fd, info.st_size) or change

    def _new_writer(self, fd: int, state: State) -> Writer:
        # With sealed_commits, a commit of one small record is a sealed record (no commit
        # pointer); the lock file's note still tells a lost one from a torn write.
        durable, clock, sealing = self.durable, self._clock, self._sealed_commits
        return Writer(
            fd, self._path, self._header, state, durable=durable, clock=clock, sealing=sealing
        )

    def _catch_up(self, fd: int, size: int) -> Change | None:
        """Locate the latest commit, repair a torn tail, and become the writer."""
        self._check_size(size)
        old = self._state
        note = self._note()
        head = pread(fd, fmt.DATA_START, 0)
        advanced = advance(self, fd, head, size)
        if (
            advanced is not None
            and advanced[0].end == size  # the usual case: no tail, nothing lost
            and missing(note, self._header.file_id, advanced[0].count, size) is None
        ):
            state, records = advanced
            self._state = state
            self._writer = self._new_writer(fd, state)
            return Change(False, old.count, state.count, records)
        located = locate(fd, self._path, self._header, head, old)
        self._judge(fd, self._header, located, note)
        if located.problems or located.tail_bytes:
            recover(fd, self._path, located, durable=self.durable, header=self._header)
            self._reader.clear()
        state = located.state
        if self._lock_fd is not None and missing(note, self._header.file_id, state.count, 0):
            # The loss is reported and repaired: the note now tells what the file holds, so
            # later openers do not report it again (even if this turn commits nothing).
            note = Note(self._header.file_id, state.count, state.end)
            self._noted = write_note(self._lock_fd, note)
        self._state = state
        self._writer = self._new_writer(fd, state)
        if state.seq == old.seq:
            return None
        return Change(False, old.count, state.count)

    def _end_turn(self) -> None:
        writer, self._writer = self._writer, None
        self._spare = None
        if writer is None or self._fd is None:
            return  # a failed commit closed the file
        if writer.dirty:
            writer.resync()  # discard what was not committed, on disk and in memory
            self._reader.clear()
        state = self._state = writer.committed
        self._spare = writer
        file_id = self._header.file_id
        if self._lock_fd is not None and (file_id, state.seq) != self._turn_mark:
            # Still under the lock: the commits of this turn are acknowledged from here on.
            noted = self._noted = write_note_of(self._lock_fd, file_id, state.count, state.end)
            if self._watch is not None:
                self._watch.arm_written(noted)

    @contextlib.contextmanager
    def rewrite(self, **format_options: Any) -> Iterator[RecordFile]:
        """Replace the file atomically (see ``RecordFile.rewrite``); only during a turn.

        Other processes notice the new file at their next poll or turn. This object stays
        the writer, on the new file, until the turn ends.
        """
        if not self._in_turn:
            raise RecordFileReadOnly("rewrite() needs a turn: use it inside `with turn()`")
        with super().rewrite(**format_options) as fresh:
            yield fresh
        assert self._fd is not None
        self._writer = self._new_writer(self._fd, self._state)

    # --- lifecycle ------------------------------------------------------------------------
    def _release(self) -> None:
        self._spare = None
        if self._watch is not None:
            self._watch.close()
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            super()._release()
        finally:
            if lock_fd is not None:
                os.close(lock_fd)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen_shared, (self._path, self._durability, self._strict))


def _reopen_shared(path: str, durability: str, strict: bool) -> SharedRecordFile:
    return SharedRecordFile(path, durability=durability, strict=strict)


def _weak_reader(shared: SharedRecordFile) -> Callable[[int, int], bytes]:
    """``shared._read_at`` without a reference cycle (so a dropped file closes at once)."""
    ref = weakref.ref(shared)

    def read_at(offset: int, size: int) -> bytes:
        target = ref()
        if target is None:
            raise RecordFileClosed("the record file was garbage-collected")
        return target._read_at(offset, size)

    return read_at
