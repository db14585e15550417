"""Following a record file that other processes append to: reading their commits in one pass.

A process that keeps a record file open must, before each operation, take in what other
processes committed since it last looked. :func:`advance` does that with one sequential
pass over the new blocks, which both extends the record index (as opening the file would)
and collects the new records; it handles the common shape of such commits (uncompressed
frames of one record each, sealed records) and leaves anything else to the general
``locate``.
:class:`BlockReader` walks a committed region in large reads; :func:`record_of_raw_frame`
picks one record out of an uncompressed frame in place.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from klepto import _recordformat as fmt
from klepto._recordbody import STREAM_MIN, LargeRecord
from klepto._recordscan import State, read_commit, read_slots
from klepto._recordseal import find_sealed, needed, read_run, starts_entry, unseal

if TYPE_CHECKING:  # annotations only: both modules import this one
    from klepto._recordindex import FrameIndex
    from klepto._recordread import Frame, FrameReader
    from klepto._recordshare import SharedRecordFile
    from klepto.records import RecordFile

__all__ = [
    "SCAN_READ",
    "BlockReader",
    "Span",
    "advance",
    "commit_point_of",
    "frame_offset",
    "frame_offsets",
    "holds_sealed",
    "read_record",
    "read_span",
    "record_of_raw_frame",
]

SCAN_READ = 1 << 18  # sequential reads: large enough for many small commits at once
_unpack_block = fmt.BLOCK.unpack_from
_PACKED = fmt.F_COMPRESSED | fmt.F_DICT | fmt.F_STREAMED
_SEALED = bytes([fmt.SEALED])
_BLOCK_KINDS = set(fmt.KIND_NAMES) - {fmt.SEALED}  # kinds with a 32-byte header


@overload
def read_record(
    shared: SharedRecordFile, number: int, offset: int, stream: Literal[False] = False
) -> bytes | memoryview: ...


@overload
def read_record(
    shared: SharedRecordFile, number: int, offset: int, stream: bool
) -> bytes | memoryview | LargeRecord: ...


def read_record(
    shared: SharedRecordFile, number: int, offset: int, stream: bool = False
) -> bytes | memoryview | LargeRecord:
    """``SharedRecordFile.record_in_frame``: one checked read of the frame at ``offset``.

    With ``stream``, a large raw record alone in its frame comes back unread, as a
    :class:`~klepto._recordbody.LargeRecord` (for the caller to read as it sees fit)."""
    found = read_span(shared, number, offset, stream)
    if type(found) is tuple:
        data, start, end = found
        return data[start:end]
    return found  # type: ignore[return-value]


Span = tuple[bytes, int, int]  # the bytes read, and where a record's body lies in them


def read_span(
    shared: SharedRecordFile, number: int, offset: int, stream: bool = False
) -> Span | bytes | memoryview | LargeRecord:
    """:func:`read_record`, except that a sealed record (the usual small entry) comes back
    as a :data:`Span` of the bytes read rather than copied out of them: the read path of
    an archive takes its value straight from there."""
    fd = shared._fd
    read = shared._frame_read
    if shared._writer is None and fd is not None:
        data = os.pread(fd, read, offset)
    else:
        data = shared._read_at(offset, read)
    if data[:1] == _SEALED and shared._header.sealing:
        # The usual case: one CRC, the record's own, not the whole run's.
        span = find_sealed(data, number, shared._header.seal)
        if span is not None:
            return data, span[0], span[1]
        return _sealed_record(shared, number, offset, data)
    return _frame_record(shared, number, offset, data, stream)


def _frame_record(
    shared: SharedRecordFile, number: int, offset: int, data: bytes, stream: bool
) -> bytes | memoryview | LargeRecord:
    """Record ``number`` of the frame block read at ``offset`` (``data``: its start)."""
    path = shared._path
    if len(data) < fmt.BLOCK_SIZE:
        raise fmt.corrupt("frame block truncated", path, offset)
    kind, flags, reserved, body_crc, size, first, count, crc = _unpack_block(data)
    if kind != fmt.FRAME or reserved or fmt.crc32(data[:28]) != crc:
        raise fmt.corrupt("damaged frame block header", path, offset)
    end = fmt.BLOCK_SIZE + size
    alone = stream and flags == 0 and count == 1 and number == first
    streamed = _checked_body(shared, offset, size, body_crc, data) if alone else None
    if streamed is not None:
        return streamed
    if end <= len(data):
        body: bytes | memoryview = data[fmt.BLOCK_SIZE : end]
    else:  # a large record: read the whole block once, keep a view of its body
        data = shared._read_at(offset, end)
        body = memoryview(data)[fmt.BLOCK_SIZE : end]
    if len(body) != size or fmt.crc32(body) != body_crc:
        raise fmt.corrupt("frame block checksum mismatch", path, offset)
    k = number - first
    if not 0 <= k < count:
        raise fmt.corrupt(f"frame does not hold record {number}", path, offset)
    if flags == 0 and count == 1:
        return body  # one raw record: the common case of one record per commit
    if not flags & _PACKED and count > 1:
        return record_of_raw_frame(body, flags, count, k, path, offset)
    block = fmt.Block(offset, kind, flags, body_crc, size, first, count, data[:32])
    frame: Frame = shared._reader.decode(block, bytes(body), shared._committed().dictionary)
    return frame.record(k)


def _sealed_record(shared: SharedRecordFile, number: int, offset: int, data: bytes) -> bytes:
    """Sealed record ``number`` of the run read at ``offset`` (``data``), when the hops
    from its start did not reach it intact: the run is read in full (and damage named)."""
    seal = shared._header.seal
    span = shared._frame_read - fmt.BLOCK_SIZE
    path = shared._path
    run = read_run(shared._read_at, offset, seal, span, number, path, data, past_damage=True)
    return run.record(number - run.first)


def _checked_body(
    shared: SharedRecordFile, offset: int, size: int, body_crc: int, data: bytes
) -> LargeRecord | None:
    """The large raw record alone in the frame at ``offset``, not read yet (``None``:
    small, or the file is being written by this object); ``data``, the frame's first
    bytes as read, gives it its head (peeking at it then needs no second read)."""
    fd = shared._fd
    if size < STREAM_MIN or fd is None or shared._writer is not None:
        return None
    head = memoryview(data)[fmt.BLOCK_SIZE :]
    return LargeRecord(fd, offset + fmt.BLOCK_SIZE, size, body_crc, shared._path, offset, head)


def commit_point_of(records: RecordFile) -> Any:
    """The last commit of any open record file (a reader's, or a writer's own); its time is
    0 when it is a sealed record (which carries none)."""
    # (a _recordshare.CommitPoint; left Any, as SharedRecordFile.commit_point's ignore expects)
    state = records._committed()
    from klepto._recordshare import CommitPoint

    full = state.last_commit == state.slot.commit_offset
    return CommitPoint(
        records.file_id,
        state.seq,
        state.last_commit,
        state.count,
        state.timestamp_ns if full else 0,
    )


def holds_sealed(shared: SharedRecordFile, offset: int, count: int, end: int) -> bool:
    """Whether the sealed record at ``offset`` ends a commit of ``count`` records in
    ``shared`` (up to ``end``): an append-only file with the same ``file_id`` then holds
    the records that commit had."""
    if not fmt.DATA_START <= offset < end:
        return False
    # (the casts: holds(), the caller, has checked that the file is open)
    data = os.pread(cast(int, shared._fd), fmt.SEALED_HEAD, offset)
    size = needed(data, 0)
    if offset + size > end:
        return False
    if size > len(data):
        data = os.pread(cast(int, shared._fd), size, offset)
    found = unseal(data, 0, shared._header.seal)
    return found is not None and found[0] + 1 == count


def frame_offset(records: RecordFile, number: int) -> int:
    """File offset of the frame holding committed record ``number`` of any record file."""
    state = records._committed()
    if not 0 <= number < state.count:
        raise IndexError(f"record {number} is not committed ({state.count} records)")
    index = records._writer.index if records._writer is not None else state.index
    reader: FrameReader = records._reader
    return reader.find(index, number)[1]


def frame_offsets(records: RecordFile, numbers: list[int]) -> list[int]:
    """:func:`frame_offset` of each of ``numbers``, 0 for a number not committed (yet):
    one lookup of the index for all of them (a flush of the archive's index asks for
    hundreds at once)."""
    state = records._committed()
    count = state.count
    index = records._writer.index if records._writer is not None else state.index
    reader: FrameReader = records._reader
    find, page = index.find, reader.page
    try:
        return [find(number, page)[1] if 0 <= number < count else 0 for number in numbers]
    except (LookupError, ValueError) as exc:
        raise fmt.corrupt(f"a record is not in the index ({exc})", records._path, None) from None


def record_of_raw_frame(
    body: bytes | memoryview, flags: int, count: int, k: int, path: str, offset: int
) -> bytes | memoryview:
    """Record ``k`` of an uncompressed frame of ``count`` records (its length table first)."""
    width = fmt.WIDTH_CODES.get((flags >> fmt.F_WIDTH_SHIFT) & 3, 0)
    if not width:
        raise fmt.corrupt("frame layout does not match its record count", path, offset)
    lengths = struct.unpack_from(f"<{count}{'H' if width == 2 else 'I'}", body)
    start = count * width + sum(lengths[:k])
    end = start + lengths[k]
    if count * width + sum(lengths) != len(body):
        raise fmt.corrupt("frame length table does not match its payload", path, offset)
    return body[start:end]


def advance(
    shared: SharedRecordFile, fd: int, head: bytes, size: int
) -> tuple[State, list[bytes]] | None:
    """The state after the commits since ``shared``'s, and their records, in one pass over
    the new blocks; ``None`` when that is not the simple case (a newer pointer naming no
    intact commit, a rewritten region, compressed frames, a large catch-up): then
    ``locate`` decides. The commits are those up to the newest pointer, then the sealed
    records after it (which have no pointers)."""
    state = shared._state
    anchor = _newer_anchor(shared, fd, head, size)
    if anchor is False:
        return None
    strict = 0 if anchor is None else anchor.end - state.end
    if strict > SCAN_READ:
        return None  # a large catch-up: the general path reads it in bounded pieces
    if anchor is None and (not shared._header.sealing or os.pread(fd, 1, state.end) != _SEALED):
        return None  # no new commit (only, perhaps, one being written)
    data = os.pread(fd, min(size - state.end, max(strict, SCAN_READ)), state.end)
    records: list[bytes] = []
    if anchor is not None:
        walked = _walk_new_blocks(shared, data[:strict], state)
        if walked is None:
            return None
        index, since, records = walked
        if state.count + len(records) != anchor.record_count:
            raise fmt.corrupt("records missing before the last commit", shared._path, state.end)
        state = state.advanced(anchor, index, since)
    if shared._header.sealing:
        state, sealed = _sealed_after(shared, data, strict, state)
        records += sealed
    if state is shared._state:
        return None
    return state, records


def _newer_anchor(
    shared: SharedRecordFile, fd: int, head: bytes, size: int
) -> fmt.Commit | Literal[False] | None:
    """The intact commit the newest pointer names if it is newer than ``shared``'s state;
    ``None`` if there is no newer pointer; ``False`` if it is not the simple case."""
    state = shared._state
    slots = read_slots(head)
    if not slots or slots[0].seq <= state.seq:
        return None
    if slots[0].commit_offset < state.end:
        return False
    anchor = read_commit(fd, slots[0].commit_offset, shared._header.file_id, size)
    if anchor is None or (anchor.seq, anchor.record_count) != (slots[0].seq, slots[0].record_count):
        return False
    return anchor


def _sealed_after(
    shared: SharedRecordFile, data: bytes, pos: int, state: State
) -> tuple[State, list[bytes]]:
    """``state`` advanced past the intact sealed records in ``data`` from ``pos`` on (the
    file from ``state.end``), and their records; anything else ends them quietly (a commit
    being written)."""
    header = shared._header
    base = state.end - pos
    seq, count, run_mark, since = state.seq, state.count, state.run_mark, state.since_checkpoint
    index = None
    records: list[bytes] = []
    last = 0
    while (found := unseal(data, pos, header.seal)) is not None and found[0] == count:
        offset = base + pos
        if starts_entry(run_mark, offset, header.frame_size):
            if index is None:
                index = state.index.copy()
            index.add(0, count, offset)
            run_mark = offset
        records.append(data[found[1] : found[2]])
        seq, count, since = seq + 1, count + 1, since + fmt.SEALED_WEIGHT
        last, pos = offset, found[2]
    if not records:
        return state, records
    marks = (run_mark, since)
    return state.after_sealed(seq, count, last, base + pos, index or state.index, marks), records


def _walk_new_blocks(
    shared: SharedRecordFile, data: bytes, state: State
) -> tuple[FrameIndex, int, list[bytes]] | None:
    """Apply the blocks in ``data`` (the file from ``state.end`` to a commit's end) to a
    copy of the index and collect their records; ``None`` if a frame is not plain."""
    index = state.index.copy()
    since, run_mark = state.since_checkpoint, state.run_mark
    records: list[bytes] = []
    pos, limit, base = 0, len(data), state.end
    crc32 = fmt.crc32
    header = shared._header
    while pos < limit:
        if data[pos] == fmt.SEALED and header.sealing:
            found = unseal(data, pos, header.seal)
            if found is None or found[0] != state.count + len(records):
                raise fmt.corrupt("damaged sealed record", shared._path, base + pos)
            if starts_entry(run_mark, base + pos, header.frame_size):
                index.add(0, found[0], base + pos)
                run_mark = base + pos
            records.append(data[found[1] : found[2]])
            since += fmt.SEALED_WEIGHT
            pos = found[2]
            continue
        run_mark = 0
        if pos + fmt.BLOCK_SIZE > limit:
            raise fmt.corrupt("damaged block before the last commit", shared._path, base + pos)
        kind, flags, reserved, body_crc, size, a, b, crc = _unpack_block(data, pos)
        start, end = pos + fmt.BLOCK_SIZE, pos + fmt.BLOCK_SIZE + size
        if reserved or crc32(data[pos : pos + 28]) != crc or end > limit or kind == fmt.SEALED:
            raise fmt.corrupt("damaged block header", shared._path, base + pos)
        since = 0 if kind == fmt.CHECKPOINT else since + fmt.BLOCK_WEIGHT
        if kind == fmt.FRAME:
            body = data[start:end]
            if crc32(body) != body_crc:
                raise fmt.corrupt("frame block checksum mismatch", shared._path, base + pos)
            if flags or b != 1 or a != state.count + len(records):
                return None
            index.add(0, a, base + pos)
            records.append(body)
        elif kind == fmt.INDEX:
            _replay_page(shared, index, data, pos, base)
        pos = end
    return index, since, records


def _replay_page(
    shared: SharedRecordFile, index: FrameIndex, data: bytes, pos: int, base: int
) -> None:
    _, _, _, body_crc, size, first, level, _ = _unpack_block(data, pos)
    start = pos + fmt.BLOCK_SIZE
    if fmt.crc32(data[start : start + size]) != body_crc:
        raise fmt.corrupt("index block checksum mismatch", shared._path, base + pos)
    try:
        index.replay_page(level, first, base + pos, size // 16)
    except ValueError as exc:
        raise fmt.corrupt(f"index page out of place ({exc})", shared._path, base + pos) from None


class BlockReader:
    """Walks the blocks of a committed region in reads of up to ``SCAN_READ`` bytes,
    checking every header and frame body."""

    def __init__(self, shared: SharedRecordFile, offset: int, end: int) -> None:
        self.shared = shared
        self.offset = offset
        self.end = end
        self.buf = b""
        self.buf_start = offset

    def _bytes(self, offset: int, size: int) -> bytes:
        rel = offset - self.buf_start
        if rel < 0 or rel + size > len(self.buf):
            want = max(size, min(SCAN_READ, self.end - offset))
            self.buf = self.shared._read_at(offset, want)
            self.buf_start, rel = offset, 0
        return self.buf[rel : rel + size]

    def walk(self) -> Iterator[tuple[int, int, int, int, int, bytes]]:
        """``(offset, kind, flags, a, b, body)`` of every block up to the end (frame bodies
        checked; other bodies only as needed by the caller)."""
        path = self.shared._path
        unpack, crc32 = fmt.BLOCK.unpack_from, fmt.crc32
        header = self.shared._header
        while self.offset + fmt.SEALED_HEAD <= self.end:
            offset = self.offset
            if header.sealing and self._bytes(offset, 1) == _SEALED:
                yield self._sealed(offset)
                continue
            if offset + fmt.BLOCK_SIZE > self.end:
                raise fmt.corrupt("damaged block header", path, offset)
            head = self._bytes(offset, fmt.BLOCK_SIZE)
            kind, flags, reserved, body_crc, size, a, b, crc = unpack(head)
            end = offset + fmt.BLOCK_SIZE + size
            if reserved or crc32(head[:28]) != crc or kind not in _BLOCK_KINDS or end > self.end:
                raise fmt.corrupt("damaged block header", path, offset)
            self.offset = end
            body = b""
            if kind in (fmt.FRAME, fmt.INDEX):
                body = self._bytes(offset + fmt.BLOCK_SIZE, size)
                if len(body) != size or crc32(body) != body_crc:
                    raise fmt.corrupt("block checksum mismatch", path, offset)
            yield offset, kind, flags, a, b, body

    def _sealed(self, offset: int) -> tuple[int, int, int, int, int, bytes]:
        """The walk's entry for the sealed record at ``offset`` (checked whole)."""
        head = self._bytes(offset, fmt.SEALED_HEAD)
        size = fmt.SEALED_HEAD + int.from_bytes(head[2:4], "little")
        data = self._bytes(offset, size) if offset + size <= self.end else b""
        found = unseal(data, 0, self.shared._header.seal)
        if found is None:
            raise fmt.corrupt("damaged sealed record", self.shared._path, offset)
        self.offset = offset + size
        return offset, fmt.SEALED, 0, found[0], 1, data[found[1] :]

    def next_frame(self) -> tuple[int, int, int, int, bytes]:
        """``(offset, flags, first record, record count, body)`` of the next frame (or
        sealed record)."""
        for offset, kind, flags, first, count, body in self.walk():
            if kind in (fmt.FRAME, fmt.SEALED):
                return offset, flags, first, count, body
        raise fmt.corrupt("records missing before the last commit", self.shared._path, self.offset)
