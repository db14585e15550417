"""The lock file of a :class:`~klepto._recordshare.SharedRecordFile`: its turn lock and note.

A shared record file's lock file (``path + '.lock'``, the one ``RecordFile`` writers use)
does two things, both kept here in the :class:`TurnLock` mixin:

* **The inter-process lock** a process holds for a turn: ``flock`` on a handle kept open
  between turns (a lock file deleted by a dropped archive is noticed and the new one
  locked), or the portable :class:`~klepto._fs.InterProcessLock` where there is no
  ``flock``. ``lock=False`` skips it: the caller guarantees one process at a time.
* **The acknowledged-commit note** (:mod:`klepto._recordack`) written under that lock at
  the end of a turn that committed: :meth:`TurnLock._judge` and :meth:`TurnLock._lost`
  check a file against it, so commits that writers acknowledged and the file lacks are
  reported (or refused, ``strict``) rather than read as a shorter file.

A child process created by ``fork`` never uses the parent's lock handle or turn:
:meth:`TurnLock._after_fork` forgets them in every open shared file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from klepto import _recordformat as fmt
from klepto._recordack import (
    Note,
    decode,
    missing,
    read_note,
    read_note_at,
    read_raw,
    zero_note,
)
from klepto._recordcreate import RecordFileReadOnly
from klepto._recordlock import lock_path, locked_live
from klepto._recordscan import Located, State, intact_commit_after
from klepto._recordwatch import NoteWatch
from klepto._recordwriter import Writer
from klepto.errors import CorruptRecordError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the portable (slower) lock below
    fcntl = None  # type: ignore[assignment]

HAS_FLOCK = fcntl is not None  # notes are kept only with flock (see TurnLock._note)

if TYPE_CHECKING:  # the mixin is only ever part of a SharedRecordFile (a RecordFile)
    from klepto.records import RecordFile

    _Base = RecordFile
else:
    _Base = object

__all__ = ["HAS_FLOCK", "TurnLock", "open_files"]

logger = logging.getLogger("klepto.records")

open_files: weakref.WeakSet[TurnLock] = weakref.WeakSet()  # forgotten in a forked child


class TurnLock(_Base):
    """The lock file of a shared record file: the turn lock and the acknowledged-commit
    note (see the module docstring). Mixed into ``SharedRecordFile``, which sets the
    attributes below."""

    _lock_path: str
    _lock_fd: int | None
    _strict: bool
    _use_os_lock: bool
    _spare: Writer | None
    _in_turn: bool
    _turn_depth: int
    _noted: bytes  # the note this object last wrote (b"": none)
    _watch: NoteWatch | None  # reads the note (klepto._recordwatch), where notes are kept

    # --- the acknowledged-commit checks ---------------------------------------------------
    def _judge(self, fd: int, header: fmt.FileHeader, located: Located, note: Note | None) -> None:
        """Raise (strict) or warn when acknowledged commits are missing or damaged: a
        commit pointer names a damaged commit, the lock file's note names commits the file
        lacks, or (without a note) an intact commit follows damage after the last one."""
        state = located.state
        lost = missing(note, header.file_id, state.count, state.end)
        if lost is not None:
            located.problems.append(lost)
        elif note is None and located.tail_bytes:
            later = intact_commit_after(fd, header, state, located.size)
            if later is not None:
                located.problems.append(
                    f"damaged block at offset {state.end}, followed by an intact commit at"
                    f" offset {later}"
                )
        if not located.problems:
            return
        if self._strict:
            raise CorruptRecordError("; ".join(located.problems), path=self._path, offset=state.end)
        logger.warning(
            "%s: reading as of commit %d (%d records): %s",
            self._path,
            state.seq,
            state.count,
            "; ".join(located.problems),
        )

    def _lost(self, state: State) -> bool:
        """Whether the lock file's note names commits past ``state`` (a file cut back to
        exactly what this object knows would otherwise go unnoticed)."""
        fd = self._lock_fd
        if fd is None or not self._use_os_lock or fcntl is None:
            note = self._note()
        else:
            raw = read_raw(fd)
            if raw == self._noted:
                # The note this object wrote after its last commit: nobody wrote since,
                # and ``state`` (never behind that commit) lacks nothing it names.
                return False
            note = decode(raw)
        return missing(note, self._header.file_id, state.count, state.end) is not None

    def _note(self) -> Note | None:
        """What the lock file says writers acknowledged (see :mod:`klepto._recordack`)."""
        if not self._use_os_lock or fcntl is None:
            return None
        if self._lock_fd is not None:
            return read_note(self._lock_fd)
        return read_note_at(self._lock_path)

    # --- the inter-process lock -----------------------------------------------------------
    @contextlib.contextmanager
    def _os_lock(self) -> Iterator[None]:
        self._acquire_os_lock()
        try:
            yield
        finally:
            self._release_os_lock()

    def _acquire_os_lock(self) -> None:
        if not self._use_os_lock:
            return
        if fcntl is None:  # pragma: no cover - no flock on this platform
            from klepto._fs import InterProcessLock

            self._portable_lock = InterProcessLock(self._lock_path)
            self._portable_lock.acquire()
            return
        fd = self._lock_fd
        if fd is not None:  # locked_live(), inline: every turn starts here
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._acquire_lock_file()

    def _release_os_lock(self) -> None:
        if not self._use_os_lock:
            return
        if fcntl is None:  # pragma: no cover
            self._portable_lock.release()
            return
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _acquire_lock_file(self) -> int:
        fd = self._lock_fd
        if fd is not None and locked_live(fd):
            return fd
        self._lock_fd = None
        if fd is not None:
            os.close(fd)  # the lock file was deleted (a dropped archive): lock the new one
        fd = self._lock_fd = lock_path(self._lock_path)
        if self._watch is not None:
            self._watch.reset()  # it may read another lock file than the one now held
        return fd

    def remove_lock_file(self) -> None:
        """Delete the lock file (during a turn, when the file itself was deleted)."""
        if not self._in_turn:
            raise RecordFileReadOnly("remove_lock_file() needs a turn")
        if self._lock_fd is not None:
            # Readers watching the note (klepto._recordwatch) notice the change at once,
            # where a deleted lock file would look unchanged to them.
            zero_note(self._lock_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._lock_path)

    # --- fork -----------------------------------------------------------------------------
    def _after_fork(self) -> None:
        """In a forked child: forget the parent's turn and lock handle (never use them)."""
        self._lock = threading.RLock()
        self._reader._lock = threading.Lock()
        self._writer = None
        self._spare = None
        self._in_turn = False
        self._turn_depth = 0
        self._noted = b""
        self._pid = os.getpid()
        lock_fd, self._lock_fd = self._lock_fd, None
        if lock_fd is not None:
            os.close(lock_fd)  # the parent's own handle keeps its lock, if it holds one


def _forget_parent_locks() -> None:
    for shared in list(open_files):
        if shared._fd is not None:
            shared._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_locks)
