"""A reader's cheap look for new commits: the lock file's note, mapped into memory.

Every turn that commits ends by writing the acknowledged-commit note (file id, record
count, end offset: :mod:`klepto._recordack`) into the first bytes of the lock file, under
the lock, before the writer returns. So while those bytes stay exactly as they were when
this process last caught up, no writer has acknowledged anything since. Comparing 40
mapped bytes costs a tenth of the ``fstat`` a poll otherwise makes (about 0.15 us against
1.2 us here), on every read of an archive that nobody is writing.

What the note cannot tell, the refresh bounds: a commit whose writer died before noting
it (never acknowledged), or a file replaced or rewritten by something other than klepto,
is seen at the next full poll, at most ``REFRESH_SECONDS`` after the last one. A dropped
archive is noticed at once: the dropping process overwrites the note before deleting the
lock file (:meth:`klepto._recordturnlock.TurnLock.remove_lock_file`).

The mapping is read-only and shared (the page cache is the same for ``pwrite`` and
``mmap``, so a note written by another process is seen by the next comparison). Only
files with notes are watched: without ``flock`` (the portable lock) or with
``lock=False`` there are no notes, and every poll looks at the file itself.
"""

from __future__ import annotations

import mmap
import os
import stat
from time import monotonic

from klepto._recordack import SIZE, Note, decode
from klepto._recordlock import OPEN_FLAGS

__all__ = ["REFRESH_SECONDS", "NoteWatch"]

REFRESH_SECONDS = 1.0  # the longest a change that no note announced can go unseen


class NoteWatch:
    """The lock file's note as last seen by a process that was up to date then."""

    __slots__ = ("_armed", "_map", "_path", "_remap_after", "_retry_after", "_unmappable", "_until")

    def __init__(self, lock_path: str) -> None:
        self._path = lock_path
        self._map: mmap.mmap | None = None
        self._armed: bytes | None = None  # the note bytes that mean "nothing new"
        self._until = 0.0
        self._remap_after = 0.0
        self._retry_after = 0.0  # no note to map yet: when to try again (3 syscalls a try)
        self._unmappable = False  # this lock file cannot be mapped: never try again

    def quiet(self) -> bool:
        """True when nothing was acknowledged since :meth:`arm` (and that was recent)."""
        armed = self._armed
        if armed is None:
            return False
        try:
            return self._map[:SIZE] == armed and monotonic() < self._until  # type: ignore[index]
        except (TypeError, ValueError):  # closed meanwhile by another thread: look properly
            return False

    def arm(self, expected: Note) -> None:
        """Trust the note from now on if it says exactly ``expected`` (the state the caller
        just found by looking at the file itself)."""
        self._armed = None
        raw = self.current()
        now = monotonic()
        if raw is None or decode(raw) != expected:
            if self._map is None or now < self._remap_after:
                return  # a note that lags or names another file: polls look at the file
            # Perhaps a mapping of a lock file deleted since: map the one at the path (at
            # most once a refresh, so a file whose note never matches costs no more).
            self.reset()
            self._remap_after = now + REFRESH_SECONDS
            raw = self.current()
            if raw is None or decode(raw) != expected:
                return
        self._until = now + REFRESH_SECONDS
        self._armed = raw

    def arm_written(self, written: bytes) -> None:
        """Trust the note this process just wrote (under the lock, after its commit)."""
        # A mapping is always of the lock file held (reset when that one is replaced), so
        # it shows ``written`` now; without one, map it (there is a note to map now).
        if self._map is not None or self.current(retry=True) == written:
            self._until = monotonic() + REFRESH_SECONDS
            self._armed = written
        else:
            self._armed = None

    def disarm(self) -> None:
        self._armed = None

    def reset(self) -> None:
        """Forget the mapping (the record file was replaced: so may its lock file be)."""
        self._armed = None
        self._retry_after = 0.0
        self._unmappable = False
        mapped, self._map = self._map, None
        if mapped is not None:
            mapped.close()

    close = reset

    def current(self, *, retry: bool = False) -> bytes | None:
        """The note's bytes as they are now (``None``: the lock file has none to map).
        Without a mapping, one is made (at most once a refresh, unless ``retry``)."""
        if self._map is None:
            now = monotonic()
            if self._unmappable or (now < self._retry_after and not retry):
                return None
            try:
                self._map = _map_note(self._path)
            except _Unmappable:
                self._unmappable = True
                return None
            if self._map is None:
                self._retry_after = now + REFRESH_SECONDS
                return None
        return self._map[:SIZE]

    def mapped(self) -> bytes | None:
        """The note's bytes if they are mapped already (never a system call)."""
        mapped = self._map
        return None if mapped is None else mapped[:SIZE]


class _Unmappable(Exception):
    """The lock file cannot be mapped (no permission, not a regular file, a file system
    without shared mappings): polls look at the record file, as without notes."""


def _map_note(path: str) -> mmap.mmap | None:
    """The first bytes of the lock file at ``path``, mapped read-only; ``None`` when it has
    no note yet (absent or shorter than one)."""
    try:
        fd = os.open(path, os.O_RDONLY | OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unmappable(path) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unmappable(path)
        if info.st_size < SIZE:
            return None
        return _mapped(fd)
    except (OSError, ValueError) as exc:
        raise _Unmappable(path) from exc
    finally:
        os.close(fd)


def _mapped(fd: int) -> mmap.mmap:
    try:  # Python 3.13+: the mapping needs no descriptor of its own (one fewer per archive)
        return mmap.mmap(fd, SIZE, access=mmap.ACCESS_READ, trackfd=False)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return mmap.mmap(fd, SIZE, access=mmap.ACCESS_READ)
