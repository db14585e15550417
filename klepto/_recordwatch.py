"""A reader's cheap look for new commits: the lock file's note, read with one ``pread``.

Every turn that commits ends by writing the acknowledged-commit note (file id, record
count, end offset: :mod:`klepto._recordack`) into the first bytes of the lock file, under
the lock, before the writer returns. So while those bytes stay exactly as they were when
this process last caught up, no writer has acknowledged anything since. Reading 40 bytes
costs about a third of the ``fstat`` a poll otherwise makes (0.45 us against 1.2 us here,
most of it building the ``stat_result``), on every read of an archive nobody is writing.

Klepto's other ways of replacing a record file say so in the note too: ``__drop__`` and
a file published over an existing one (a copy, ``write_records``, a rewrite) zero it
(:func:`klepto._recordack.retract_note`), so readers look at once. What no note can tell,
the refresh bounds: a commit whose writer died before noting it (never acknowledged), a
commit by a plain :class:`~klepto.records.RecordFile` writer (which keeps no note), or a
file replaced or rewritten by something other than klepto, is seen at the next full poll,
at most ``REFRESH_SECONDS`` after the last one.

The note is read, never mapped: a lock file truncated under a mapping would kill the
reading process (``SIGBUS``), and some versions of ``filelock`` truncate the files they
lock. A truncated or missing note simply never matches. Only files with notes are
watched: without ``flock`` (the portable lock) or with ``lock=False`` there are no notes,
and every poll looks at the file itself.
"""

from __future__ import annotations

import errno
import os
import stat
from time import monotonic

from klepto._recordack import SIZE, Note, decode
from klepto._recordlock import OPEN_FLAGS

__all__ = ["REFRESH_SECONDS", "NoteWatch"]

REFRESH_SECONDS = 1.0  # the longest a change that no note announced can go unseen


class NoteWatch:
    """The lock file's note as last seen by a process that was up to date then."""

    __slots__ = ("_armed", "_fd", "_path", "_reopen_after", "_retry_after", "_until", "_unusable")

    def __init__(self, lock_path: str) -> None:
        self._path = lock_path
        self._fd: int | None = None  # the lock file, open for reading
        self._armed: bytes | None = None  # the note bytes that mean "nothing new"
        self._until = 0.0
        self._reopen_after = 0.0
        self._retry_after = 0.0  # no lock file yet: when to try again
        self._unusable = False  # this lock file cannot be opened: never try again

    def quiet(self) -> bool:
        """True when nothing was acknowledged since :meth:`arm` (and that was recent)."""
        armed = self._armed
        if armed is None:
            return False
        try:
            return os.pread(self._fd, SIZE, 0) == armed and monotonic() < self._until  # type: ignore[arg-type]
        except (OSError, TypeError):  # closed meanwhile by another thread: look properly
            return False

    def arm(self, expected: Note) -> None:
        """Trust the note from now on if it says exactly ``expected`` (the state the caller
        just found by looking at the file itself)."""
        self._armed = None
        raw = self.current()
        now = monotonic()
        if raw is None or decode(raw) != expected:
            if self._fd is None or now < self._reopen_after:
                return  # a note that lags or names another file: polls look at the file
            # Perhaps a lock file deleted since: open the one at the path (at most once a
            # refresh, so a file whose note never matches costs no more).
            self.reset()
            self._reopen_after = now + REFRESH_SECONDS
            raw = self.current()
            if raw is None or decode(raw) != expected:
                return
        self._until = now + REFRESH_SECONDS
        self._armed = raw

    def arm_written(self, written: bytes) -> None:
        """Trust the note this process just wrote (under the lock, after its commit)."""
        # An open lock file is the one held (the watch is reset whenever a new one is
        # locked), so it holds ``written`` now; without one, open it.
        if self._fd is not None or self.current(retry=True) == written:
            self._until = monotonic() + REFRESH_SECONDS
            self._armed = written
        else:
            self._armed = None

    def reset(self) -> None:
        """Forget the lock file (the record file or the lock file was replaced)."""
        self._armed = None
        self._retry_after = 0.0
        self._unusable = False
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    close = reset

    def current(self, *, retry: bool = False) -> bytes | None:
        """The note's bytes as they are now (``None``: no lock file to read). Without an
        open lock file, one is opened (at most once a refresh, unless ``retry``)."""
        if self._fd is None:
            now = monotonic()
            if self._unusable or (now < self._retry_after and not retry):
                return None
            try:
                self._fd = _open_lock_file(self._path)
            except (PermissionError, IsADirectoryError, _NotRegular):
                self._unusable = True  # it will not change: polls look at the file
                return None
            except OSError:  # out of descriptors, an I/O error...: try again later
                self._fd = None
            if self._fd is None:
                self._retry_after = now + REFRESH_SECONDS
                return None
        return os.pread(self._fd, SIZE, 0)


class _NotRegular(OSError):
    """The lock file's name holds something else than a regular file."""


def _open_lock_file(path: str) -> int | None:
    """The lock file at ``path``, open for reading (``None`` if there is none yet);
    ``OSError`` if it cannot be read (no permission, not a regular file, a symbolic link)."""
    try:
        fd = os.open(path, os.O_RDONLY | OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a planted symbolic link: never followed
            raise _NotRegular(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular(path)
    except BaseException:
        os.close(fd)
        raise
    return fd
