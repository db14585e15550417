"""A large record read as a file: its checksum verified first, then read straight into
whatever the reader makes of it; or read whole into one buffer and checked there.

A record whose large parts are out-of-band pickle buffers (:mod:`klepto._pickleoob`) is
best read whole (:meth:`LargeRecord.whole`): one read into a new buffer, its CRC over that
memory, and the unpickler uses the buffers in place. The new buffer is not zeroed first
(``numpy.empty`` when numpy is loaded: zeroing 800 KB cost ~15 us of a ~185 us read) and
is placed so that the record ends on a 16-byte boundary: its buffers are at its end, so an
array of 8- or 16-byte items comes out aligned (numpy computes on unaligned arrays ~1.6x
slower). An ordinary pickle would copy its large byte strings out of such a buffer, so it
is read as a file instead:

Read as one ``bytes`` object, a large value (hundreds of kilobytes and more) is allocated
twice: once as the record, once more by the unpickler. Both are large and freed at
different times, so the C allocator returns the memory to the OS between reads and every
read page-faults all of it in again (about a millisecond per 800 KB on a virtual
machine). As a file, the record's CRC is checked in a first pass through one small buffer
kept per thread, then ``pickle.load`` reads each large byte string straight into its own
object (``readinto``): one allocation, as when unpickling from a plain file.

The second pass reads the same bytes again. A record file never changes a committed byte
in place (it appends; compaction writes a new file and the open descriptor keeps the old
one), so what was verified is what is read.
"""

from __future__ import annotations

import sys
import threading

from klepto import _recordformat as fmt
from klepto._fs import pread, pread_into

__all__ = ["STREAM_MIN", "CheckedBody", "LargeRecord"]

STREAM_MIN = 1 << 18  # smaller records are cheaper read whole
_CHUNK = 1 << 16
_ALIGN = 16  # malloc's alignment on 64-bit platforms; enough for any numpy item size
_scratch = threading.local()


def _buffer() -> memoryview:
    buffer: memoryview | None = getattr(_scratch, "buffer", None)
    if buffer is None:
        buffer = _scratch.buffer = memoryview(bytearray(_CHUNK))
    return buffer


def _fresh(size: int) -> memoryview:
    """``size`` new writable bytes, not zeroed, ending on an :data:`_ALIGN` boundary (if the
    allocator aligns to it, as glibc's and numpy's do: otherwise merely unaligned)."""
    pad = -size % _ALIGN
    numpy = sys.modules.get("numpy")  # a value with large buffers usually imported it already
    empty = getattr(numpy, "empty", None)
    view = memoryview(bytearray(size + pad) if empty is None else empty(size + pad, "u1"))
    view[:pad] = bytes(pad)  # never read into: zeroed, so no stale heap byte is reachable
    return view[pad:]


def _read_into(fd: int, view: memoryview, offset: int, path: object, where: int) -> None:
    if pread_into(fd, view, offset) != view.nbytes:
        raise fmt.corrupt("frame block truncated", path, where)


class LargeRecord:
    """A large record not read yet: bytes ``[start, start + size)`` of ``fd`` whose CRC-32
    must be ``crc``. The reader peeks at its first bytes (unchecked: only to choose how to
    read it), then reads it either as a :class:`CheckedBody` (a checked file) or
    :meth:`whole` into one buffer, checked. Damage raises
    :class:`~klepto.errors.CorruptRecordError` naming ``path`` and the block's ``offset``.

    ``head``: bytes from ``start`` on that the caller has read already (the rest of its read
    of the frame's header), which :meth:`peek` returns instead of reading them again."""

    __slots__ = ("_crc", "_fd", "_head", "_size", "_start", "offset", "path")

    def __init__(
        self,
        fd: int,
        start: int,
        size: int,
        crc: int,
        path: object,
        offset: int,
        head: bytes | memoryview = b"",
    ):
        self._fd, self._start, self._size, self._crc = fd, start, size, crc
        self.path, self.offset, self._head = path, offset, head

    def __len__(self) -> int:
        return self._size

    def peek(self, size: int) -> bytes:
        """Up to ``size`` first bytes, NOT checked: never decode them, only look."""
        size = min(size, self._size)
        if len(self._head) >= size:  # read already: a syscall saved
            return bytes(self._head[:size])
        return pread(self._fd, size, self._start)

    def checked(self) -> CheckedBody:
        return CheckedBody(self._fd, self._start, self._size, self._crc, self.path, self.offset)

    def whole(self) -> memoryview:
        """The record in a new buffer (one read, then its CRC over that memory: what was
        checked is what the caller gets; nothing else of the buffer is ever seen)."""
        view = _fresh(self._size)
        _read_into(self._fd, view, self._start, self.path, self.offset)
        if fmt.crc32(view) != self._crc:
            raise fmt.corrupt("frame block checksum mismatch", self.path, self.offset)
        return view


class CheckedBody:
    """Bytes ``[start, start + size)`` of ``fd``, whose CRC-32 must be ``crc`` (else
    :class:`~klepto.errors.CorruptRecordError` naming ``path`` and the block's ``offset``,
    raised before any byte is returned), as a binary file for ``pickle.load``."""

    def __init__(self, fd: int, start: int, size: int, crc: int, path: object, offset: int):
        self._fd = fd
        self._start = self._pos = start
        self._end = start + size
        self.path = path
        self.offset = offset
        self._verify(crc)

    def _verify(self, crc: int) -> None:
        buffer = _buffer()
        running = 0
        pos = self._start
        while pos < self._end:
            piece = buffer[: min(len(buffer), self._end - pos)]
            _read_into(self._fd, piece, pos, self.path, self.offset)
            running = fmt.crc32(piece, running)
            pos += len(piece)
        if running != crc:
            raise fmt.corrupt("frame block checksum mismatch", self.path, self.offset)

    def __len__(self) -> int:
        return self._end - self._start

    def tell(self) -> int:
        return self._pos - self._start

    def seek(self, position: int) -> None:
        self._pos = self._start + min(max(position, 0), len(self))

    def readinto(self, target: bytearray | memoryview) -> int:
        view = memoryview(target).cast("B")
        n = min(len(view), self._end - self._pos)
        _read_into(self._fd, view[:n], self._pos, self.path, self.offset)
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._pos
        n = left if size is None or size < 0 else min(size, left)
        data = pread(self._fd, n, self._pos)
        if len(data) != n:
            raise fmt.corrupt("frame block truncated", self.path, self.offset)
        self._pos += n
        return data

    def readline(self) -> bytes:
        """Up to and including the next newline (pickle's text opcodes use it)."""
        line = b""
        while self._pos < self._end:
            piece = self.read(256)
            cut = piece.find(b"\n")
            if cut >= 0:
                self._pos -= len(piece) - cut - 1
                return line + piece[: cut + 1]
            line += piece
        return line
