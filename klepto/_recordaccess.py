"""Reading a :class:`~klepto._recordshare.SharedRecordFile` where an index points.

An index over a shared record file (the file archive's) remembers where records and commits
are rather than replaying the file; these are the reads it needs beyond one record at a
known frame (:func:`klepto._recordfollow.read_record`):

* :func:`scan_records`, ``SharedRecordFile.scan``: a run of committed records read
  sequentially in large reads, to catch up with what other processes appended;
* :func:`holds_point`, ``SharedRecordFile.holds``: whether the file still holds a commit
  that the index recorded as a :class:`~klepto._recordshare.CommitPoint`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from klepto import _recordformat as fmt
from klepto._recordfollow import BlockReader, holds_sealed
from klepto._recordscan import read_commit

if TYPE_CHECKING:  # annotations only: _recordshare imports this module
    from klepto._recordshare import CommitPoint, SharedRecordFile

__all__ = ["holds_point", "scan_records"]


def holds_point(shared: SharedRecordFile, point: CommitPoint) -> bool:
    """``SharedRecordFile.holds``: whether the file contains the commit ``point``."""
    state = shared._committed()
    if point.file_id != shared.file_id or point.seq > state.seq:
        return False
    if point.seq == 0:
        return point.count == 0
    assert shared._fd is not None
    if point.timestamp_ns == 0 and shared._header.sealing:  # a sealed record's point
        return holds_sealed(shared, point.offset, point.count, state.end)
    commit = read_commit(shared._fd, point.offset, shared._header.file_id, state.end)
    return commit is not None and (
        commit.seq,
        commit.record_count,
        commit.timestamp_ns,
    ) == (point.seq, point.count, point.timestamp_ns)


def scan_records(shared: SharedRecordFile, start: int, stop: int) -> Iterator[bytes]:
    """``SharedRecordFile.scan``: committed records ``start .. stop - 1``, read sequentially
    in large reads (a few reads cover many small commits, where ``records()`` reads each
    one-record frame on its own)."""
    if start >= stop:
        return
    state = shared._committed()
    if stop > state.count:
        raise IndexError(f"record {stop - 1} is not committed ({state.count} records)")
    blocks = BlockReader(shared, shared.frame_of(start), state.end)
    number = start
    while number < stop:
        offset, flags, first, count, body = blocks.next_frame()
        if first + count <= number:
            continue  # a sealed record before ``start``, in the run frame_of() points at
        if not first <= number < first + count:
            raise fmt.corrupt(f"frame does not hold record {number}", shared._path, offset)
        if flags == 0 and count == 1:
            yield body
        else:
            head = fmt.encode_block(fmt.FRAME, flags, fmt.crc32(body), len(body), first, count)
            block = fmt.Block(
                offset, fmt.FRAME, flags, fmt.crc32(body), len(body), first, count, head
            )
            frame = shared._reader.decode(block, body, state.dictionary)
            yield from frame.records(number - first, min(count, stop - first), None)
        number = first + count
