"""Sealed records: a commit of one small record in a single 16-byte-header block.

Most commits of a log hold one small record (an operation, an event), and a full commit
(a FRAME block, a COMMIT block and a commit-pointer update: three writes and 144 bytes of
framing) costs far more than the record. In a version-2 file the writer stores such a
commit as one *sealed record* instead, written with one system call::

    0   1  kind: 7 (SEALED)
    1   1  flags: 0
    2   2  length of the record (u16)
    4   8  the record's number
    12  4  crc32 of bytes 0..11 and then of the record, starting from the file's seal
    16  .. the record, raw

The *seal* is ``crc32(file_id)``: a block from another file never checks out here. A sealed
record is valid only where a commit may start (at the end of the previous commit) and only
with the record number due there; it is then a commit (sequence number one more than the
previous commit's), which leaves the metadata, dictionary and index checkpoint unchanged.
Commit pointers name full commits only: the sealed records after the pointed-to commit are
found by walking, which the writer keeps short (see ``_recordwriter``).

The index lists a sealed record only where a *run* of consecutive sealed records begins and
then once per ``frame_size`` bytes (:func:`starts_entry`); a lookup landing on a sealed
record reads the run forward from there, as it would read a frame.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

from klepto._crc import crc32
from klepto.errors import CorruptRecordError

__all__ = [
    "HEAD_SIZE",
    "MAX_LENGTH",
    "SEALED",
    "RunFrame",
    "encode",
    "later_sealed",
    "read_run",
    "seal_of",
    "starts_entry",
    "unseal",
]

SEALED = 7
HEAD = struct.Struct("<BBHQ")  # kind, flags, length, record number
CRC = struct.Struct("<I")
HEAD_SIZE = HEAD.size + CRC.size  # 16
MAX_LENGTH = 0xFFFF
RUN_SLACK = 512  # read this much past a run's nominal span: one read covers most runs
# How far past the last commit to look for a later intact sealed record: the writer keeps
# them within 256 KiB (SEAL_SPAN) of the last full commit; twice that, for margin.
TAIL_SEARCH = (1 << 19) + 2 * (MAX_LENGTH + HEAD_SIZE)
_START = re.compile(re.escape(bytes([SEALED, 0])))
_unpack_head = HEAD.unpack_from
_unpack_full = struct.Struct("<BBHQI").unpack_from  # the whole 16-byte header


def seal_of(file_id: bytes) -> int:
    """The CRC seed of a file's sealed records."""
    return crc32(file_id)


def encode(record: bytes, number: int, seal: int) -> bytes:
    """The sealed record of ``record`` (at most ``MAX_LENGTH`` bytes) numbered ``number``."""
    head = HEAD.pack(SEALED, 0, len(record), number)
    return head + CRC.pack(crc32(record, crc32(head, seal))) + record


def find_sealed(data: bytes, number: int, seal: int) -> tuple[int, int] | None:
    """``(body start, body end)`` of sealed record ``number`` in the run starting at
    ``data[0]``, hopping over the records before it by their headers' lengths and checking
    only its own CRC (seeded with the file's seal, over a header that names ``number``:
    what it vouches for is that record, wherever the hops land). ``None`` when the hops do
    not reach an intact record ``number``: the caller then reads the run in full."""
    pos = 0
    size = len(data)
    while size - pos >= HEAD_SIZE:
        kind, flags, length, found, crc = _unpack_full(data, pos)
        if kind != SEALED or flags or found > number:
            return None
        if found == number:  # unseal(), inline: this is every direct read's check
            start = pos + HEAD_SIZE
            end = start + length
            if end > size or crc32(data[start:end], crc32(data[pos : pos + 12], seal)) != crc:
                return None
            return start, end
        pos += HEAD_SIZE + length
    return None


def unseal(data: bytes | memoryview, pos: int, seal: int) -> tuple[int, int, int] | None:
    """``(record number, body start, body end)`` of the sealed record at ``data[pos:]``.

    ``None`` when the bytes there are not a whole, intact sealed record (another kind of
    block, a torn write, damage, or not enough bytes in ``data``).
    """
    if len(data) - pos < HEAD_SIZE or data[pos] != SEALED:
        return None
    _kind, flags, length, number, crc = _unpack_full(data, pos)
    start = pos + HEAD_SIZE
    end = start + length
    if flags or end > len(data) or crc32(data[start:end], crc32(data[pos : pos + 12], seal)) != crc:
        return None
    return number, start, end


def needed(data: bytes | memoryview, pos: int) -> int:
    """How many bytes the sealed record at ``data[pos]`` spans (16 while its header is cut)."""
    if len(data) - pos < HEAD_SIZE:
        return HEAD_SIZE
    return HEAD_SIZE + _unpack_head(data, pos)[2]  # type: ignore[no-any-return]


def later_sealed(data: bytes, base: int, count: int, seal: int) -> int | None:
    """The offset of an intact sealed record numbered above ``count`` in ``data`` (the file
    from offset ``base``: the end of the last commit found, which holds ``count`` records),
    past its first byte; ``None`` if there is none.

    A killed writer leaves at most the start of what it was writing, which never holds a
    whole sealed record with a later number: finding one means that a later commit is
    intact, so what lies at ``base`` is damage, not a torn write. Sealed records begin
    within ``SEAL_SPAN`` of the last full commit, so ``TAIL_SEARCH`` bytes suffice.
    """
    for match in _START.finditer(data, 1):
        found = unseal(data, match.start(), seal)
        if found is not None and found[0] > count:
            return base + match.start()
    return None


def starts_entry(run_mark: int, offset: int, frame_size: int) -> bool:
    """Whether the sealed record at ``offset`` gets an index entry.

    ``run_mark`` is the offset of the last indexed sealed record of the current run, 0 when
    the block before this one is not a sealed record (a new run starts here). Everyone who
    rebuilds the index (the writer, open, verify, followers) applies this same rule.
    """
    return not run_mark or offset - run_mark >= frame_size


class RunFrame:
    """Consecutive sealed records read from one place, with the interface of a frame."""

    __slots__ = ("data", "ends", "first", "starts")

    def __init__(self, first: int, data: bytes, starts: list[int], ends: list[int]) -> None:
        self.first = first
        self.data = data
        self.starts = starts
        self.ends = ends

    @property
    def payload(self) -> bytes:
        return self.data

    def __len__(self) -> int:
        return len(self.ends)

    def record(self, k: int) -> bytes:
        return self.data[self.starts[k] : self.ends[k]]

    def records(self, k0: int, k1: int, encoding: str | None) -> list[Any]:
        data = self.data
        pairs = zip(self.starts[k0:k1], self.ends[k0:k1])
        if encoding is None:
            return [data[a:b] for a, b in pairs]
        return [data[a:b].decode(encoding) for a, b in pairs]


def read_run(
    read: Callable[[int, int], bytes],
    offset: int,
    seal: int,
    span: int,
    need: int,
    path: object,
    data: bytes | None = None,
    past_damage: bool = False,
) -> RunFrame:
    """The sealed records from ``offset`` on, at least up to record ``need``.

    Starts from ``data`` (bytes already read at ``offset``), or reads ``span`` bytes, and
    more if record ``need`` lies beyond them; stops at the first block that is not the
    next sealed record. Damage before record ``need`` raises :class:`CorruptRecordError`,
    unless ``past_damage`` and record ``need`` itself is intact: then the result holds
    that record only (its ``first`` is ``need``: not a frame to cache for the run).
    What follows record ``need`` may be a commit being written, and ends the run quietly.
    """
    if data is None:
        data = read(offset, span + RUN_SLACK)
    starts: list[int] = []
    ends: list[int] = []
    first, pos = -1, 0
    while True:
        first, pos, done = _parse_run(data, pos, seal, first, starts, ends)
        if done or 0 <= first <= need < first + len(ends):
            break  # the run ends here, or what was asked for is here (the rest: when asked)
        more = read(offset + len(data), max(needed(data, pos), span) + RUN_SLACK)
        if not more:
            break
        data += more
    if not 0 <= first <= need < first + len(ends):
        past = _past_damage(read, offset, data, seal, need, span) if past_damage else None
        if past is not None:
            return past
        raise CorruptRecordError(
            f"sealed record {need} is missing or damaged", path=path, offset=offset + pos
        )
    return RunFrame(first, data, starts, ends)


def _past_damage(
    read: Callable[[int, int], bytes], offset: int, data: bytes, seal: int, need: int, span: int
) -> RunFrame | None:
    """Record ``need`` found by its own intact header when damage earlier in its run stops
    the walk (so one damaged record does not make its neighbours unreadable); ``None`` if
    it is not intact either. A record without an index entry begins less than a frame
    size past the run's entry and is shorter than a frame: it lies within ``2 * span``.
    Its CRC, seeded with the file's seal, vouches for it wherever it is found."""
    want = 2 * span + RUN_SLACK
    if len(data) < want:
        data += read(offset + len(data), want - len(data))
    for match in _START.finditer(data):
        found = unseal(data, match.start(), seal)
        if found is not None and found[0] == need:
            return RunFrame(need, data, [found[1]], [found[2]])
    return None


def _parse_run(
    data: bytes, pos: int, seal: int, first: int, starts: list[int], ends: list[int]
) -> tuple[int, int, bool]:
    """Add the whole sealed records of ``data`` from ``pos`` on to ``starts``/``ends``;
    ``(first, pos, done)``: ``done`` when something else than the next one stopped it,
    not the end of ``data``. (The inner loop of reading a run: kept flat.)"""
    size = len(data)
    expected = first + len(ends) if first >= 0 else -1
    while size - pos >= HEAD_SIZE:
        kind, flags, length, number, crc = _unpack_full(data, pos)
        start = pos + HEAD_SIZE
        end = start + length
        if kind != SEALED or flags:
            return first, pos, True
        if end > size:
            return first, pos, False
        if crc32(data[start:end], crc32(data[pos : pos + 12], seal)) != crc:
            return first, pos, True
        if expected < 0:
            first = expected = number
        elif number != expected:
            return first, pos, True
        starts.append(start)
        ends.append(end)
        expected += 1
        pos = end
    return first, pos, pos < size and data[pos] != SEALED
