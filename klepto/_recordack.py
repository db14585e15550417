"""The acknowledged-commit note: what a shared record file's writers last acknowledged.

A commit of one small record is a *sealed record* (:mod:`klepto._recordseal`): one write,
no commit pointer. Without a pointer, a file cut short after an acknowledged sealed record
would look like a writer killed mid-write, and the cut would go unnoticed. So the writers
of a :class:`~klepto._recordshare.SharedRecordFile` note, at the end of every turn that
committed, which commit they acknowledged, in the first bytes of the lock file they hold
anyway (one small ``pwrite`` to a file nobody fsyncs: it costs about a microsecond and
never adds to a durable commit's ``fdatasync``)::

    0   4   magic b"KAK1"
    4   16  file_id of the record file
    20  8   record count after the acknowledged commit
    28  8   the file offset where that commit ends
    36  4   crc32 of bytes 0..35

Openers and writers catching up compare it with what they find: a file holding fewer
records than its note says lost acknowledged commits (truncated, or damaged at its end), which
is reported instead of being read as a shorter file. The note is only ever behind the
file (written after the commit, under the lock; read before the file), except after a
power cut without ``durable`` (the lock file's page may reach the disk before the record
file's), which is then reported as what it is: lost commits. A note for another file (a
different ``file_id``: the file was replaced) or a damaged or missing one says nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from typing import NamedTuple

from klepto._crc import crc32
from klepto._recordlock import OPEN_FLAGS, symlink_refused

__all__ = [
    "Note",
    "decode",
    "encoded",
    "missing",
    "read_note",
    "read_note_at",
    "read_raw",
    "retract_note",
    "write_note",
    "write_note_of",
    "zero_note",
]

MAGIC = b"KAK1"
_NOTE = struct.Struct("<4s16sQQ")
SIZE = _NOTE.size + 4  # 40
_UNREADABLE = {errno.ENOENT, errno.EACCES, errno.EPERM}


class Note(NamedTuple):
    """The last acknowledged commit of the file ``file_id``: ``records`` records, ending at
    offset ``end``."""

    file_id: bytes
    records: int
    end: int


def encode(note: Note) -> bytes:
    return encoded(note.file_id, note.records, note.end)


def encoded(file_id: bytes, records: int, end: int) -> bytes:
    """:func:`encode` of the note ``(file_id, records, end)``, without building it."""
    body = _NOTE.pack(MAGIC, file_id, records, end)
    return body + crc32(body).to_bytes(4, "little")


def decode(data: bytes) -> Note | None:
    """The note in ``data``, or ``None`` if there is none (empty, torn or damaged)."""
    if len(data) < SIZE or crc32(data[: _NOTE.size]) != int.from_bytes(
        data[_NOTE.size : SIZE], "little"
    ):
        return None
    magic, file_id, count, end = _NOTE.unpack_from(data)
    return Note(file_id, count, end) if magic == MAGIC else None


def write_note(fd: int, note: Note) -> bytes:
    """Record ``note`` in the lock file ``fd`` (held by the caller); the bytes written."""
    return write_note_of(fd, note.file_id, note.records, note.end)


def write_note_of(fd: int, file_id: bytes, records: int, end: int) -> bytes:
    """:func:`write_note` for the end of a turn (the hot path: no :class:`Note` built)."""
    data = encoded(file_id, records, end)
    os.pwrite(fd, data, 0)
    return data


def read_note(fd: int) -> Note | None:
    """The note in the open lock file ``fd``."""
    return decode(os.pread(fd, SIZE, 0))


def read_raw(fd: int) -> bytes:
    """The bytes of the note in the open lock file ``fd`` (not checked)."""
    return os.pread(fd, SIZE, 0)


def read_note_at(path: str) -> Note | None:
    """The note in the lock file at ``path``, without creating or locking it (``None`` if
    it cannot be read: a reader may have no right to it). A symbolic link is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_refused(path) from None
        if exc.errno in _UNREADABLE:
            return None
        raise
    try:
        return read_note(fd)
    finally:
        os.close(fd)


def missing(note: Note | None, file_id: bytes, count: int, end: int) -> str | None:
    """Why a file ``file_id`` whose intact commits hold ``count`` records and end at offset
    ``end`` lost acknowledged commits (``None`` if, as far as ``note`` tells, it did not)."""
    if note is None or note.file_id != file_id or note.records <= count:
        return None
    return (
        f"commits up to {note.records} records (ending at offset {note.end}) were"
        f" acknowledged, but the file is cut short or damaged at offset {end}, after"
        f" {count} records"
    )


def retract_note(lock_path: str) -> None:
    """Zero the note in the lock file at ``lock_path``, if it has one: the record file
    beside it was just replaced, and readers that watch the note
    (:mod:`klepto._recordwatch`) must look at the file now. A zero note says nothing (see
    :func:`decode`). Best effort: where the lock file cannot be written, readers still
    notice the new file within the watch's refresh."""
    try:
        fd = os.open(lock_path, os.O_WRONLY | OPEN_FLAGS)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # best effort, as the docstring says
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_size >= SIZE:
                zero_note(fd)
    finally:
        os.close(fd)


def zero_note(fd: int) -> None:
    """Overwrite the note in the lock file ``fd`` with zeros: a note that says nothing, and
    a change that readers watching the note notice (the file was replaced or dropped)."""
    os.pwrite(fd, bytes(SIZE), 0)
