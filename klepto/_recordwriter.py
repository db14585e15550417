"""The write side of a record file: buffering records into frames and writing commits.

Records wait in memory until about ``frame_size`` bytes have accumulated; then they become
one (compressed) frame appended to a write buffer, which goes to the file in large writes.
Nothing written before a COMMIT block is visible to anyone, so frames of an uncommitted
transaction may reach the file early without harm. ``commit()`` appends the last partial
frame, the metadata, sometimes an index checkpoint, and the COMMIT block, writes the buffer,
fsyncs once in ``durable`` mode, and finally updates the commit pointer slot.

One fsync is enough because the COMMIT block's CRC chain covers every block of the commit:
after a power loss a commit whose data did not reach the disk fails verification on open
and is dropped, and no commit is acknowledged before its fsync returned.

A commit of one small record and nothing else is written as a *sealed record* instead
(version-2 files; :mod:`klepto._recordseal`): one block, one write, no pointer update. To
keep opening cheap, the sealed records after the last full commit are bounded: a commit is
written in full once ``CHECKPOINT_EVERY`` (weighted blocks) since the index checkpoint or
``SEAL_SPAN`` bytes since the last full commit have passed, and when its index entry would
fill a page.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from klepto import _fs, _recordseal
from klepto import _recordformat as fmt
from klepto._fs import pread, pwrite_all
from klepto._recordscan import State, locate, read_slots
from klepto._recordstream import Streaming
from klepto.errors import LockedError

FLUSH_AT = 1 << 20  # write the buffer to the file once it holds this much
STREAM_AT = 4 << 20  # records at least this large are compressed and written in chunks
MIN_COMPRESS = 256  # smaller payloads are stored raw: compressing them costs more than it saves
# Weight (fmt.BLOCK_WEIGHT a block, fmt.SEALED_WEIGHT a sealed record) between index
# checkpoints: bounds the walk on open to about 256 blocks or 1024 sealed records.
CHECKPOINT_EVERY = 256 * fmt.BLOCK_WEIGHT
SEAL_SPAN = 1 << 18  # bytes of sealed records after the last full commit: bounds that walk
_UNSET: Any = object()
_SEALED = _recordseal.SEALED
_SEAL_HEAD = _recordseal.HEAD.pack
_SEAL_CRC = _recordseal.CRC.pack
_SEAL_HEAD_SIZE = _recordseal.HEAD_SIZE
_SEALED_WEIGHT = fmt.SEALED_WEIGHT
_crc32 = fmt.crc32
_forks = 0  # processes forked from this one so far (in a child: 1 more than its parent)


def _count_fork() -> None:
    global _forks
    _forks += 1


_COUNTS_FORKS = hasattr(os, "register_at_fork")
if _COUNTS_FORKS:
    # A writer compares this counter with its own instead of calling getpid() per commit.
    os.register_at_fork(after_in_child=_count_fork)


def sync(fd: int) -> None:
    """Make the file's data (and its size) durable, with the strongest cheap call available."""
    if sys.platform == "darwin":
        import fcntl

        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # plain fsync on macOS does not flush the disk
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


class Writer(Streaming):
    """Uncommitted state of the one writer of a record file (not thread-safe on its own)."""

    def __init__(
        self,
        fd: int,
        path: object,
        header: fmt.FileHeader,
        state: State,
        *,
        durable: bool,
        clock: Callable[[], int] = time.time_ns,
        encoding: str = "utf-8",
        sealing: bool = True,
    ) -> None:
        self.fd = fd
        self.path = path
        self.header = header
        self.durable = durable
        self.clock = clock
        self.encoding = encoding
        self.frame_size = header.frame_size
        self.pid = os.getpid()
        self.forks = _forks if _COUNTS_FORKS else -1  # -1: never equal, check the pid
        self.seal_max = self._seal_max(header) if sealing else 0
        self.seal_seed = header.seal
        self.committed = state
        self._load(state)

    @staticmethod
    def _seal_max(header: fmt.FileHeader) -> int:
        """The largest record a sealed record holds in this file (0: none). Records that
        would be compressed are not sealed: a sealed record is stored raw."""
        if not header.sealing:
            return 0
        largest = min(_recordseal.MAX_LENGTH, header.frame_size - 1)
        return min(largest, MIN_COMPRESS - 1) if header.codec else largest

    def _load(self, state: State) -> None:
        self.committed = state
        self.index = state.index.copy()
        self.buf = bytearray()
        self.buf_base = state.end
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.framed = state.count
        self.count = state.count
        self.chain = 0
        self.nblocks = 0
        self.since_cp = state.since_checkpoint
        self.checkpoint = state.checkpoint
        self.metadata = state.metadata
        self.metadata_new = _UNSET
        self.dictionary = state.dictionary
        zdict = self._read_dictionary(state.dictionary)
        self.codec = fmt.make_codec(self.header, zdict)
        wants_dict = self.header.codec != 0 and self.header.dictionary_size > 0
        self.sample: bytearray | None = bytearray() if wants_dict and zdict is None else None
        self.next_slot = self._next_slot()
        self.seal_until = state.slot.commit_end + SEAL_SPAN  # sealed records start before

    def _next_slot(self) -> int:
        """The commit pointer slot to write next: the one not holding the newest pointer
        (so a torn pointer write always leaves the newest one before it intact)."""
        head = pread(self.fd, fmt.DATA_START, 0)
        slots = [fmt.decode_slot(head[offset : offset + 64]) for offset in fmt.SLOT_OFFSETS]
        # (the cast: mypy does not narrow ``slots[i]`` by the ``is None`` test before it)
        newest = max(
            range(2), key=lambda i: -1 if slots[i] is None else cast(fmt.Slot, slots[i]).seq
        )
        return 1 - newest

    def _read_dictionary(self, offset: int) -> bytes | None:
        if not offset:
            return None
        from klepto._recordscan import read_block

        found = read_block(self.fd, offset, self.committed.end)
        if found is None or found[0].kind != fmt.DICT:
            raise fmt.corrupt("damaged compression dictionary", self.path, offset)
        return found[1]

    # --- state ----------------------------------------------------------------------------
    @property
    def end(self) -> int:
        """The file offset the next block will be written at."""
        return self.buf_base + len(self.buf)

    @property
    def dirty(self) -> bool:
        return bool(self.pending or self.nblocks or self.metadata_new is not _UNSET)

    def read_at(self, offset: int, size: int) -> bytes:
        """Bytes of the file as the writer sees them, including its unwritten buffer."""
        if offset >= self.buf_base:
            rel = offset - self.buf_base
            return bytes(self.buf[rel : rel + size])
        data = pread(self.fd, min(size, self.buf_base - offset), offset)
        if offset + size > self.buf_base:
            data += bytes(self.buf[: offset + size - self.buf_base])
        return data

    # --- appending ------------------------------------------------------------------------
    def append(self, record: bytes | bytearray | memoryview | str) -> int:
        """Add one record (``str`` is encoded with ``encoding``); return its number."""
        if type(record) is not bytes:
            record = self._as_bytes(record)
        size = len(record)
        if size >= self.frame_size:
            return self.append_large(record)
        if self.sample is not None:
            self._take_sample(record)
        self.pending.append(record)
        self.pending_size += size + 2  # + the frame's length-table entry
        self.count += 1
        if self.pending_size >= self.frame_size:
            self.cut()
        return self.count - 1

    def _as_bytes(self, record: object) -> bytes:
        if isinstance(record, str):
            return record.encode(self.encoding)
        if isinstance(record, (bytes, bytearray, memoryview)):
            return bytes(record)
        raise TypeError(f"a record must be bytes or str, not {type(record).__name__}")

    def _take_sample(self, data: bytes) -> None:
        sample = self.sample
        assert sample is not None
        sample += data[: self.header.dictionary_size - len(sample)]
        if len(sample) >= self.header.dictionary_size:
            self._install_dictionary(bytes(sample))

    def _install_dictionary(self, zdict: bytes) -> None:
        """Write the preset dictionary that frames from now on are compressed with."""
        self.sample = None
        self.cut()  # frames already pending were sized without it; keep them dictionary-free
        self.dictionary = self._add_block(fmt.DICT, 0, zdict, 0, 0)
        self.codec = fmt.make_codec(self.header, zdict)

    def append_large(self, data: bytes | memoryview) -> int:
        self.cut()
        if len(data) >= STREAM_AT:
            return self.append_stream([data])
        self._emit([bytes(data)])
        self.count += 1
        return self.count - 1

    def cut(self) -> None:
        """Turn pending records into frames of about ``frame_size`` bytes each."""
        if not self.pending:
            return
        records, self.pending, self.pending_size = self.pending, [], 0
        group: list[bytes] = []
        size = 0
        for record in records:
            group.append(record)
            size += len(record) + 2
            if size >= self.frame_size:
                self._emit(group)
                group, size = [], 0
        if group:
            self._emit(group)

    def _emit(self, records: list[bytes]) -> None:
        payload, code = fmt.frame_payload(records)
        flags = code << fmt.F_WIDTH_SHIFT
        body = payload
        if self.header.codec and len(payload) >= MIN_COMPRESS:
            use_dict = self.codec.zdict is not None and len(payload) <= 4 * self.header.frame_size
            packed = self.codec.compress(payload, use_dict)
            if len(packed) < len(payload) - (len(payload) >> 4):
                body = packed
                flags |= fmt.F_COMPRESSED | (fmt.F_DICT if use_dict else 0)
        first = self.framed
        offset = self._add_block(fmt.FRAME, flags, body, first, len(records))
        self.framed += len(records)
        self._index_frame(first, offset)

    def _index_frame(self, first: int, offset: int) -> None:
        if self.index is self.committed.index:
            # The committed state keeps the index as of its commit: copy before changing it.
            self.index = self.index.copy()
        index = self.index
        index.add(0, first, offset)
        level = 0
        while index.full(level):
            firsts, offsets = index.take(level)
            page = self._add_block(fmt.INDEX, 0, fmt.encode_page(firsts, offsets), firsts[0], level)
            index.add(level + 1, firsts[0], page)
            level += 1

    def _add_block(self, kind: int, flags: int, body: bytes, a: int, b: int) -> int:
        offset = self.buf_base + len(self.buf)
        head = fmt.encode_block(kind, flags, fmt.crc32(body), len(body), a, b)
        self.buf += head
        self.buf += body
        self.chain = fmt.crc32(head, self.chain)
        self.nblocks += 1
        self.since_cp = 0 if kind == fmt.CHECKPOINT else self.since_cp + fmt.BLOCK_WEIGHT
        if len(self.buf) >= FLUSH_AT:
            self.flush()
        return offset

    def flush(self) -> None:
        """Write the buffer to the file (not a commit: nothing becomes visible)."""
        if self.buf:
            self.check_process()
            pwrite_all(self.fd, self.buf, self.buf_base)
            self.buf_base += len(self.buf)
            self.buf = bytearray()

    def check_process(self) -> None:
        """Refuse to write from a forked child: the parent owns the file and its lock."""
        if os.getpid() != self.pid:
            raise LockedError(
                f"{self.path} was opened for writing in process {self.pid}; "
                "open it again in this process"
            )

    # --- sealed records ---------------------------------------------------------------------
    def seal(self, record: bytes | bytearray | memoryview | str) -> int:
        """Append ``record`` and commit it at once; its number.

        The commit is one sealed record when nothing else waits (see the module docstring),
        otherwise an ordinary ``append`` and ``commit``.
        """
        if type(record) is not bytes:
            record = self._as_bytes(record)
        if self.pending or self.sample is not None or not self._sealed(record):
            number = self.append(record)
            self.commit()
            return number
        return self.framed - 1

    def _sealed(self, record: bytes) -> bool:
        """Commit ``record`` (not yet counted) as a sealed record, if that is allowed now.

        The hot path of a log that commits every record: kept to one write and a few
        attribute updates.
        """
        state = self.committed
        offset = state.end
        size = len(record)
        if (
            size > self.seal_max
            or offset >= self.seal_until
            or self.nblocks
            or self.metadata_new is not _UNSET
            or state.since_checkpoint >= CHECKPOINT_EVERY
        ):
            return False
        run_mark = state.run_mark
        entry = not run_mark or offset - run_mark >= self.frame_size
        if entry and len(self.index.firsts[0]) + 1 >= self.header.fanout:
            return False  # the entry fills a page: a full commit writes the page with it
        if self.forks != _forks:
            self.check_process()
        number = self.framed
        head = _SEAL_HEAD(_SEALED, 0, size, number)
        block = head + _SEAL_CRC(_crc32(record, _crc32(head, self.seal_seed))) + record
        written = _fs._pwrite_once(self.fd, block, offset)  # looked up here: tests inject EIO
        if written != len(block):
            pwrite_all(self.fd, block[written:], offset + written)
        if self.durable:
            sync(self.fd)
        index = self.index
        if entry:
            index.firsts[0].append(number)
            index.offsets[0].append(offset)
            run_mark = offset
        self.framed = self.count = number + 1
        self.buf_base = end = offset + size + _SEAL_HEAD_SIZE
        self.since_cp = since = self.since_cp + _SEALED_WEIGHT
        # The committed state is updated in place (a new object per commit would cost more
        # than the write); its index is the writer's, which holds no uncommitted entry here.
        state.seq += 1
        state.count = number + 1
        state.end = end
        state.last_commit = offset
        state.index = index
        state.since_checkpoint = since
        state.run_mark = run_mark
        return True

    # --- metadata and commit --------------------------------------------------------------
    def set_metadata(self, value: bytes | None) -> None:
        self.metadata_new = value

    def pending_metadata(self) -> Any:
        return self.metadata_new

    def commit(self) -> bool:
        """Make everything appended since the last commit visible and permanent, or nothing.

        Returns ``False`` when there was nothing to commit.
        """
        if len(self.pending) == 1 and not self.nblocks:
            record = self.pending[0]
            self.pending, self.pending_size, self.count = [], 0, self.framed
            if self._sealed(record):
                return True
            self.pending.append(record)  # not sealable: put it back, commit in full
            self.pending_size, self.count = len(record) + 2, self.framed + 1
        self.cut()
        changed = self.metadata_new is not _UNSET and (
            self.metadata_new is not None or self.metadata != 0
        )
        if self.metadata_new is not _UNSET:
            value = self.metadata_new
            self.metadata = 0 if value is None else self._add_block(fmt.META, 0, value, 0, 0)
            self.metadata_new = _UNSET
        if not self.nblocks and not changed:
            return False
        if self.since_cp >= CHECKPOINT_EVERY:
            self.checkpoint = self._add_block(
                fmt.CHECKPOINT, 0, fmt.encode_checkpoint(self.index.levels()), self.framed, 0
            )
        commit = self._commit_record()
        self.buf += fmt.encode_commit(commit, self.header.file_id)
        self.since_cp += fmt.BLOCK_WEIGHT
        self.flush()
        if self.durable:
            sync(self.fd)
        slot = fmt.Slot(commit.seq, commit.offset, commit.end, commit.record_count)
        pwrite_all(self.fd, slot.encode(), fmt.SLOT_OFFSETS[self.next_slot])
        self.next_slot = 1 - self.next_slot
        self.seal_until = slot.commit_end + SEAL_SPAN
        self.committed = State(
            commit.seq,
            commit.record_count,
            commit.end,
            commit.offset,
            commit.checkpoint,
            commit.metadata,
            commit.dictionary,
            commit.timestamp_ns,
            self.index,
            self.since_cp,
            slot,
            0,
        )
        self.chain = 0
        self.nblocks = 0
        return True

    def _commit_record(self) -> fmt.Commit:
        last = self.committed
        return fmt.Commit(
            seq=last.seq + 1,
            offset=self.end,
            record_count=self.framed,
            start=last.end,
            prev_commit=last.last_commit,
            checkpoint=self.checkpoint,
            metadata=self.metadata,
            dictionary=self.dictionary,
            timestamp_ns=self.clock(),
            chain_crc=self.chain,
            n_blocks=self.nblocks,
        )

    def resync(self) -> None:
        """Forget everything not committed and reload the state from the file itself.

        Used by ``rollback()`` and after a failed commit: the file then holds the last
        commit that reached it whole (the one that failed, if only its pointer update
        did), and anything after that is truncated.
        """
        self.buf = bytearray()
        head = pread(self.fd, fmt.DATA_START, 0)
        state = locate(self.fd, self.path, self.header, head).state
        if os.fstat(self.fd).st_size > state.end:
            os.ftruncate(self.fd, state.end)
        if state.slot.seq and state.slot not in read_slots(head):
            pwrite_all(self.fd, state.slot.encode(), fmt.SLOT_OFFSETS[self._next_slot()])
        self._load(state)
