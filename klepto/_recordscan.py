"""Reading a record file's structure: walking blocks, finding the last commit, verifying.

Opening a record file never replays it. The commit pointer slots name the last commit; its
COMMIT block names the latest checkpoint (the saved rightmost path of the index); only the
blocks between that checkpoint and the commit are walked, a bounded number. Anything the
slots say is committed must be intact: damage there raises :class:`CorruptRecordError`.
Blocks after the last pointed-to commit are the *tail*: a complete, fully verified commit
found there (a sealed record, which never has a pointer of its own, or a full commit whose
writer was killed before updating its pointer) is accepted; anything else is a torn tail,
ignored by readers and truncated by the writer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from klepto import _recordformat as fmt
from klepto._fs import pread
from klepto._recordindex import FrameIndex
from klepto._recordseal import TAIL_SEARCH, later_sealed, needed, starts_entry, unseal
from klepto.errors import CorruptRecordError

_WINDOW = 1 << 16
_CHUNK = 1 << 20
_RUN_READ = 1 << 19  # a run of sealed records after a commit is shorter (see SEAL_SPAN)
_PROBE = 1 << 12  # the first read past the last commit: often just a commit being written


class InvalidRecordFile(CorruptRecordError):
    """The file is not a record file, has an unsupported version, or lost its commit pointers."""


def body_intact(fd: int, block: fmt.Block) -> bool:
    """Whether a block's body matches its CRC (a sealed record was checked when decoded)."""
    return block.kind == fmt.SEALED or body_crc(fd, block) == block.body_crc


def body_crc(fd: int, block: fmt.Block) -> int:
    """CRC of a block's body, read in chunks (bodies may be gigabytes)."""
    crc = 0
    pos, end = block.body_start, block.end
    while pos < end:
        chunk = pread(fd, min(_CHUNK, end - pos), pos)
        if not chunk:
            break
        crc = fmt.crc32(chunk, crc)
        pos += len(chunk)
    return crc


@dataclass(slots=True)
class State:
    """What a reader knows about the file as of one commit (or the writer, as of its last).

    ``last_commit`` is the last commit's block (a COMMIT block or a sealed record); ``slot``
    points at the last full commit (what the commit pointers name); ``timestamp_ns`` is the
    time of that full commit (sealed records carry none); ``run_mark`` is the offset of the
    last indexed sealed record when the last commit is a sealed record, else 0. The writer
    updates its committed state in place after a sealed record.
    """

    seq: int = 0
    count: int = 0
    end: int = fmt.DATA_START
    last_commit: int = 0
    checkpoint: int = 0
    metadata: int = 0
    dictionary: int = 0
    timestamp_ns: int = 0
    index: FrameIndex = field(default_factory=lambda: FrameIndex(2))
    since_checkpoint: int = 0
    slot: fmt.Slot = fmt.EMPTY_SLOT
    run_mark: int = 0

    def advanced(self, commit: fmt.Commit, index: FrameIndex, since: int) -> State:
        """The state after the full commit ``commit``."""
        return State(
            commit.seq,
            commit.record_count,
            commit.end,
            commit.offset,
            commit.checkpoint,
            commit.metadata,
            commit.dictionary,
            commit.timestamp_ns,
            index,
            since,
            fmt.Slot(commit.seq, commit.offset, commit.end, commit.record_count),
            0,
        )

    def after_sealed(
        self, seq: int, count: int, offset: int, end: int, index: FrameIndex, marks: tuple[int, int]
    ) -> State:
        """The state after the sealed record at ``offset`` (ending at ``end``), commit ``seq``
        with ``count`` records; ``marks`` is ``(run_mark, since_checkpoint)``."""
        run_mark, since = marks
        return State(
            seq,
            count,
            end,
            offset,
            self.checkpoint,
            self.metadata,
            self.dictionary,
            self.timestamp_ns,
            index,
            since,
            self.slot,
            run_mark,
        )


@dataclass
class Located:
    """The result of :func:`locate`: the state, plus what lies beyond it and why."""

    state: State
    size: int
    problems: list[str] = field(default_factory=list)

    @property
    def tail_bytes(self) -> int:
        return max(self.size - self.state.end, 0)


class BlockWalker:
    """Iterates block headers from ``start`` up to ``limit``, reading in 64 KiB windows.

    Sealed records (``seal``: the file's seal; ``None`` in a version-1 file, where they
    are invalid) are checked whole, body included. After iteration, ``stop`` is where it
    stopped and ``reason`` is ``None`` (reached ``limit``), ``'incomplete'`` (the file ends
    inside a block) or ``'invalid'``.
    """

    def __init__(self, fd: int, start: int, limit: int, seal: int | None = None) -> None:
        self.fd = fd
        self.pos = start
        self.limit = limit
        self.seal = seal
        self.stop = start
        self.reason: str | None = None
        self._buf = b""
        self._buf_start = start

    def _view(self, offset: int, size: int) -> tuple[bytes, int]:
        rel = offset - self._buf_start
        if rel < 0 or rel + size > len(self._buf):
            self._buf = pread(self.fd, max(_WINDOW, size), offset)
            self._buf_start = offset
            rel = 0
        return self._buf, rel

    def body(self, block: fmt.Block) -> bytes:
        """The block's body (through the window when it fits in one)."""
        if block.body_len > _WINDOW:
            return pread(self.fd, block.body_len, block.body_start)
        buf, rel = self._view(block.body_start, block.body_len)
        return buf[rel : rel + block.body_len]

    def __iter__(self) -> Iterator[fmt.Block]:
        while self.pos < self.limit:
            block = self._decode()
            if block is None:
                break
            if block.end > self.limit:
                self.reason = "incomplete"
                break
            self.pos = block.end
            yield block
        self.stop = self.pos

    def _decode(self) -> fmt.Block | None:
        """The block at ``pos``, or ``None`` with ``reason`` set."""
        buf, rel = self._view(self.pos, fmt.SEALED_HEAD)
        if self.seal is not None and rel < len(buf) and buf[rel] == fmt.SEALED:
            size = needed(buf, rel)
            buf, rel = self._view(self.pos, size)
            if len(buf) - rel < size:
                self.reason = "incomplete"
                return None
            block = fmt.decode_sealed(buf, rel, self.pos, self.seal)
        else:
            buf, rel = self._view(self.pos, fmt.BLOCK_SIZE)
            if len(buf) - rel < fmt.BLOCK_SIZE:
                self.reason = "incomplete"
                return None
            block = fmt.decode_block(buf, rel, self.pos)
        if block is None:
            self.reason = "invalid"
        return block


def walker_for(fd: int, header: fmt.FileHeader, start: int, limit: int) -> BlockWalker:
    """A :class:`BlockWalker` that knows whether ``header``'s file may hold sealed records."""
    return BlockWalker(fd, start, limit, header.seal if header.sealing else None)


def read_block(fd: int, offset: int, limit: int) -> tuple[fmt.Block, bytes] | None:
    """The complete block at ``offset`` with its CRC-checked body, or ``None``."""
    if offset < fmt.DATA_START or offset + fmt.BLOCK_SIZE > limit:
        return None
    head = pread(fd, fmt.BLOCK_SIZE, offset)
    if len(head) < fmt.BLOCK_SIZE:
        return None
    block = fmt.decode_block(head, 0, offset)
    if block is None or block.end > limit:
        return None
    body = pread(fd, block.body_len, block.body_start)
    if len(body) != block.body_len or fmt.crc32(body) != block.body_crc:
        return None
    return block, body


def read_commit(fd: int, offset: int, file_id: bytes, limit: int) -> fmt.Commit | None:
    found = read_block(fd, offset, limit)
    if found is None:
        return None
    return fmt.decode_commit(found[0], found[1], file_id)


def read_slots(head: bytes) -> list[fmt.Slot]:
    """The valid commit pointers in the first page of a file, newest first."""
    slots = [fmt.decode_slot(head[off : off + 64]) for off in fmt.SLOT_OFFSETS]
    return sorted((s for s in slots if s is not None), key=lambda s: s.seq, reverse=True)


def locate(
    fd: int,
    path: object,
    header: fmt.FileHeader,
    head: bytes,
    known: State | None = None,
    *,
    extend: bool = True,
) -> Located:
    """Find the last valid commit and the index state as of it (see the module docstring).

    ``extend=False`` trusts the commit pointers, plus the sealed records after the commit
    they name (which have no pointers): every other commit acknowledged to a live writer's
    caller has its pointer written, so a refreshing reader need not walk the rest of the
    tail (which, while a large transaction is being written, can be long).
    """
    size = os.fstat(fd).st_size
    problems: list[str] = []
    anchor = _anchor_commit(fd, path, header, head, size, problems)
    anchor_seq = 0 if anchor is None else anchor.seq
    if known is not None and known.seq >= anchor_seq:
        state = known  # a torn pointer write can show an older commit: never go back
    elif anchor is None:
        state = State(index=FrameIndex(header.fanout))
    else:
        state = _state_at(fd, path, header, anchor, size, known)
    if extend:
        state = _extend_past(fd, header, state, size)
    else:
        state = _sealed_run(fd, header, state, size)
    return Located(state, size, problems)


def _anchor_commit(
    fd: int, path: object, header: fmt.FileHeader, head: bytes, size: int, problems: list[str]
) -> fmt.Commit | None:
    """The newest commit a valid slot points to (``None``: the file has no commit yet)."""
    slots = read_slots(head)
    if not slots:
        raise InvalidRecordFile(
            "both commit pointers are damaged", path=path, offset=fmt.SLOT_OFFSETS[0]
        )
    for slot in slots:
        if slot.seq == 0:
            return None
        commit = read_commit(fd, slot.commit_offset, header.file_id, size)
        if commit is not None and (commit.seq, commit.record_count) == (
            slot.seq,
            slot.record_count,
        ):
            return commit
        problems.append(
            f"commit {slot.seq} at offset {slot.commit_offset} is missing or "
            "damaged (torn by a crash, or corrupted)"
        )
    raise CorruptRecordError(
        "no intact commit at any commit pointer", path=path, offset=slots[-1].commit_offset
    )


def _load_checkpoint(
    fd: int, path: object, header: fmt.FileHeader, offset: int, limit: int
) -> FrameIndex:
    if offset == 0:
        return FrameIndex(header.fanout)
    found = read_block(fd, offset, limit)
    if found is None or found[0].kind != fmt.CHECKPOINT:
        raise CorruptRecordError("damaged index checkpoint", path=path, offset=offset)
    try:
        return FrameIndex(header.fanout, fmt.decode_checkpoint(found[1]))
    except ValueError as exc:
        raise CorruptRecordError(
            f"damaged index checkpoint ({exc})", path=path, offset=offset
        ) from None


def _state_at(
    fd: int,
    path: object,
    header: fmt.FileHeader,
    anchor: fmt.Commit,
    size: int,
    known: State | None,
) -> State:
    """The state as of ``anchor``, from ``known`` when that is closer than the checkpoint."""
    if known is not None and known.seq and anchor.checkpoint < known.end <= anchor.offset:
        index, start, since = known.index.copy(), known.end, known.since_checkpoint
        run_mark = known.run_mark
    else:
        index = _load_checkpoint(fd, path, header, anchor.checkpoint, anchor.offset)
        start = (
            anchor.checkpoint + _checkpoint_len(fd, anchor.checkpoint)
            if anchor.checkpoint
            else fmt.DATA_START
        )
        since, run_mark = 0, 0
    walker = walker_for(fd, header, start, anchor.end)
    last = None
    for block in walker:
        since = 0 if block.kind == fmt.CHECKPOINT else since + _weight(block.kind)
        run_mark = _apply(index, block, path, run_mark, header.frame_size)
        last = block
    if walker.reason is not None or last is None or last.offset != anchor.offset:
        raise CorruptRecordError(
            "damaged block before the last commit", path=path, offset=walker.stop
        )
    return State().advanced(anchor, index, since)


def _weight(kind: int) -> int:
    return fmt.SEALED_WEIGHT if kind == fmt.SEALED else fmt.BLOCK_WEIGHT


def _checkpoint_len(fd: int, offset: int) -> int:
    block = fmt.decode_block(pread(fd, fmt.BLOCK_SIZE, offset), 0, offset)
    assert block is not None  # _load_checkpoint has just read and checked it
    return fmt.BLOCK_SIZE + block.body_len


def _apply(
    index: FrameIndex, block: fmt.Block, path: object, run_mark: int, frame_size: int
) -> int:
    """Mirror what the writer did to the index when it wrote ``block``; the new run mark
    (see :func:`klepto._recordseal.starts_entry`)."""
    if block.kind == fmt.SEALED:
        if not starts_entry(run_mark, block.offset, frame_size):
            return run_mark
        run_mark = block.offset
    elif block.kind == fmt.INDEX:
        try:
            index.replay_page(block.b, block.a, block.offset, block.body_len // 16)
        except ValueError as exc:
            raise CorruptRecordError(
                f"index page out of place ({exc})", path=path, offset=block.offset
            ) from None
        return 0
    elif block.kind != fmt.FRAME:
        return 0
    try:
        index.add(0, block.a, block.offset)
    except ValueError:
        raise CorruptRecordError(
            "frames out of record order", path=path, offset=block.offset
        ) from None
    return run_mark if block.kind == fmt.SEALED else 0


def _extend_past(fd: int, header: fmt.FileHeader, state: State, size: int) -> State:
    """Accept complete, fully verified commits written after the last pointed-to one."""
    while state.end < size:
        found: State | None = _sealed_run(fd, header, state, size)
        if found is state:
            found = _verified_commit_after(fd, header, state, size)
        if found is None:
            break
        state = found
    return state


def _sealed_run(fd: int, header: fmt.FileHeader, state: State, size: int) -> State:
    """``state`` advanced past the intact sealed records right after it (each one a commit);
    ``state`` itself when there are none. Its index is copied before it is changed.

    The writer keeps such a run short (``SEAL_SPAN``), so it is read in few pieces (a
    small first one: often nothing follows but a commit being written) and parsed without
    block objects.
    """
    if not header.sealing or state.end >= size:
        return state
    base, seal, frame_size = state.end, header.seal, header.frame_size
    data = pread(fd, min(size - base, _PROBE), base)
    index = None
    count, run_mark, since = state.count, state.run_mark, state.since_checkpoint
    pos = last = 0
    while True:
        found = unseal(data, pos, seal)
        if found is None and _cut_short(data, pos) and base + len(data) < size:
            more = pread(fd, min(size - base - len(data), _RUN_READ), base + len(data))
            if more:  # a sealed record crosses the end of what was read
                data += more
                continue
        if found is None or found[0] != count:
            break
        offset = base + pos
        if starts_entry(run_mark, offset, frame_size):
            if index is None:
                index = state.index.copy()
            index.add(0, count, offset)
            run_mark = offset
        count, since, last, pos = count + 1, since + fmt.SEALED_WEIGHT, offset, found[2]
    if count == state.count:
        return state
    seq = state.seq + count - state.count
    return state.after_sealed(seq, count, last, base + pos, index or state.index, (run_mark, since))


def _cut_short(data: bytes, pos: int) -> bool:
    """Whether ``data`` ends at ``pos`` or inside the sealed record starting there."""
    return pos == len(data) or (data[pos] == fmt.SEALED and pos + needed(data, pos) > len(data))


def _verified_commit_after(
    fd: int, header: fmt.FileHeader, state: State, size: int
) -> State | None:
    """The state after the next commit past ``state``, if that commit is whole and intact.

    Headers are walked first (cheap, and all there is while a transaction is still being
    written); bodies are read and CRC-checked only once a matching COMMIT block is found.
    """
    commit = _next_commit(fd, header, state, size)
    if commit is None:
        return None
    index = state.index.copy()
    since, run_mark = state.since_checkpoint, state.run_mark
    for block in walker_for(fd, header, state.end, commit.offset):
        if block.kind == fmt.SEALED or body_crc(fd, block) != block.body_crc:
            return None
        try:
            run_mark = _apply(index, block, None, run_mark, header.frame_size)
        except CorruptRecordError:
            return None
        since = 0 if block.kind == fmt.CHECKPOINT else since + fmt.BLOCK_WEIGHT
    return state.advanced(commit, index, since + fmt.BLOCK_WEIGHT)


def _next_commit(fd: int, header: fmt.FileHeader, state: State, size: int) -> fmt.Commit | None:
    """The COMMIT block closing the blocks after ``state``, if its links and chain match."""
    walker = walker_for(fd, header, state.end, size)
    chain = 0
    for count, block in enumerate(walker):
        if block.kind == fmt.SEALED:
            return None  # only where a commit starts, and then _sealed_run took it
        if block.kind == fmt.COMMIT:
            commit = fmt.decode_commit(block, walker.body(block), header.file_id)
            ok = (
                commit is not None
                and commit.seq == state.seq + 1
                and commit.start == state.end
                and commit.prev_commit == state.last_commit
                and commit.chain_crc == chain
                and commit.n_blocks == count
                and _pointers_inside(commit)
            )
            return commit if ok else None
        chain = fmt.crc32(block.raw, chain)
    return None


def intact_commit_after(fd: int, header: fmt.FileHeader, state: State, size: int) -> int | None:
    """The offset of an intact sealed record past ``state`` with a later record number (then
    what follows ``state`` is damage, not a torn write): see :func:`later_sealed`."""
    if not header.sealing or state.end + 1 >= size:
        return None
    data = pread(fd, min(size - state.end, TAIL_SEARCH), state.end)
    return later_sealed(data, state.end, state.count, header.seal)


def _pointers_inside(commit: fmt.Commit) -> bool:
    return all(
        p == 0 or fmt.DATA_START <= p < commit.offset
        for p in (commit.checkpoint, commit.metadata, commit.dictionary)
    )
