"""``RecordFile.verify()``: check every block, checksum and link of a record file.

Opening a file checks only what it must (the last commit and a bounded tail); this walks
the whole committed part: block headers and body CRCs, every frame decompressed and its
length table checked, index pages and checkpoints compared with the index rebuilt from the
frames, and every commit's sequence number, start, back link, CRC chain, record count and
metadata/dictionary/checkpoint pointers; a sealed record must start a commit and carry the
record number due there. Problems are collected, not raised, so that one
report tells everything; a damaged block header stops the walk (nothing after it can be
located).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from klepto import _recordformat as fmt
from klepto._fs import pread
from klepto._recordindex import FrameIndex
from klepto._recordread import FrameReader
from klepto._recordscan import State, body_crc, intact_commit_after, walker_for
from klepto._recordseal import starts_entry
from klepto.errors import CorruptRecordError

Progress = Callable[[int, "int | None"], object]  # progress(bytes checked, bytes to check)


@dataclass
class VerifyReport:
    """What :meth:`RecordFile.verify` found. ``problems`` lists ``(offset, reason)``."""

    path: str
    commits: int = 0
    records: int = 0
    frames: int = 0
    blocks: int = 0
    bytes_checked: int = 0
    tail_bytes: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_damaged(self) -> None:
        if self.problems:
            offset, reason = self.problems[0]
            extra = len(self.problems) - 1
            more = f" (and {extra} more problems)" if extra else ""
            raise CorruptRecordError(reason + more, path=self.path, offset=offset)

    def __str__(self) -> str:
        status = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [
            f"{self.path}: {status}: {self.commits} commits, {self.records} records, "
            f"{self.frames} frames, {self.blocks} blocks, {self.bytes_checked} bytes "
            f"checked, {self.tail_bytes} bytes after the last commit"
        ]
        lines += [f"  offset {offset}: {reason}" for offset, reason in self.problems]
        return "\n".join(lines)


class _Verifier:
    def __init__(self, fd: int, path: str, header: fmt.FileHeader) -> None:
        self.fd = fd
        self.header = header
        self.report = VerifyReport(path)
        self.reader = FrameReader(path, header, lambda offset, size: pread(fd, size, offset))
        self.index = FrameIndex(header.fanout)
        self.records = 0
        self.dictionary = 0
        self.last = State(index=self.index)
        self.chain = 0
        self.n_blocks = 0
        self.run_mark = 0  # see klepto._recordseal.starts_entry
        self.in_commit: dict[int, int] = {}  # offset -> kind of this commit's non-frame blocks

    def problem(self, offset: int, reason: str) -> None:
        self.report.problems.append((offset, reason))

    def run(self, end: int, progress: Progress | None = None) -> VerifyReport:
        walker = walker_for(self.fd, self.header, fmt.DATA_START, end)
        for block in walker:
            self.report.blocks += 1
            self.report.bytes_checked += block.end - block.offset
            if progress is not None:
                progress(block.end, end)
            if block.kind == fmt.SEALED:
                self.sealed(block)
                continue
            self.run_mark = 0
            if block.kind == fmt.COMMIT:
                self.commit(block, walker.body(block))
                continue
            if body_crc(self.fd, block) != block.body_crc:
                self.problem(block.offset, f"{fmt.KIND_NAMES[block.kind]} block checksum mismatch")
            else:
                self.content(block)
            self.chain = fmt.crc32(block.raw, self.chain)
            self.n_blocks += 1
        if walker.reason is not None:
            what = "damaged block header" if walker.reason == "invalid" else "file ends in a block"
            self.problem(walker.stop, f"{what} before the last commit")
        return self.report

    def content(self, block: fmt.Block) -> None:
        if block.kind == fmt.FRAME:
            self.frame(block)
            return
        self.in_commit[block.offset] = block.kind
        body = pread(self.fd, block.body_len, block.body_start)
        if block.kind == fmt.INDEX:
            self.page(block, body)
        elif block.kind == fmt.CHECKPOINT:
            self.checkpoint(block, body)
        elif block.kind == fmt.DICT:
            self.dictionary = block.offset

    def frame(self, block: fmt.Block) -> None:
        self.report.frames += 1
        if block.a != self.records:
            self.problem(block.offset, f"frame starts at record {block.a}, expected {self.records}")
        try:
            body = pread(self.fd, block.body_len, block.body_start)
            decoded = self.reader.decode(block, body, self.dictionary)
            if len(decoded) != block.b:
                self.problem(block.offset, "frame holds a different number of records")
        except (CorruptRecordError, zlib.error) as exc:
            self.problem(block.offset, str(exc))
        self.records = block.a + block.b
        try:
            self.index.add(0, block.a, block.offset)
        except ValueError as exc:
            self.problem(block.offset, f"frame out of order ({exc})")

    def sealed(self, block: fmt.Block) -> None:
        """A sealed record (whole and intact, or the walker would have stopped): a commit."""
        self.report.frames += 1
        if self.n_blocks:
            self.problem(block.offset, "sealed record inside another commit")
        if block.a != self.records:
            self.problem(block.offset, f"sealed record {block.a}, expected {self.records}")
        self.records = block.a + 1
        if starts_entry(self.run_mark, block.offset, self.header.frame_size):
            try:
                self.index.add(0, block.a, block.offset)
            except ValueError as exc:
                self.problem(block.offset, f"sealed record out of order ({exc})")
            self.run_mark = block.offset
        last = self.last
        self.last = last.after_sealed(
            last.seq + 1, block.a + 1, block.offset, block.end, self.index, (self.run_mark, 0)
        )
        self.report.commits += 1
        self.report.records = self.records
        self.chain, self.n_blocks = 0, 0
        self.in_commit = {}

    def page(self, block: fmt.Block, body: bytes) -> None:
        level = block.b
        if level < len(self.index.firsts):
            expected = fmt.encode_page(self.index.firsts[level], self.index.offsets[level])
            if body != expected:
                self.problem(block.offset, "index page does not match the frames it indexes")
        try:
            self.index.replay_page(level, block.a, block.offset, block.body_len // 16)
        except ValueError as exc:
            self.problem(block.offset, f"index page out of place ({exc})")

    def checkpoint(self, block: fmt.Block, body: bytes) -> None:
        if body != fmt.encode_checkpoint(self.index.levels()):
            self.problem(block.offset, "index checkpoint does not match the frames before it")

    def commit(self, block: fmt.Block, body: bytes) -> None:
        commit = fmt.decode_commit(block, body, self.header.file_id)
        if commit is None:
            self.problem(block.offset, "damaged commit block")
            return
        last = self.last
        checks = [
            (commit.seq == last.seq + 1, f"commit {commit.seq} follows commit {last.seq}"),
            (commit.start == last.end, "commit does not start where the previous one ended"),
            (commit.prev_commit == last.last_commit, "commit links to the wrong previous one"),
            (
                commit.chain_crc == self.chain and commit.n_blocks == self.n_blocks,
                "commit checksum chain does not match its blocks",
            ),
            (commit.record_count == self.records, "commit record count does not match frames"),
            (self.points(commit.metadata, last.metadata, fmt.META), "bad metadata pointer"),
            (self.points(commit.dictionary, last.dictionary, fmt.DICT), "bad dictionary pointer"),
            (
                self.points(commit.checkpoint, last.checkpoint, fmt.CHECKPOINT),
                "bad checkpoint pointer",
            ),
        ]
        for ok, reason in checks:
            if not ok:
                self.problem(block.offset, reason)
        self.report.commits += 1
        self.report.records = commit.record_count
        self.last = State().advanced(commit, self.index, 0)
        self.chain, self.n_blocks = 0, 0
        self.in_commit = {}

    def points(self, pointer: int, previous: int, kind: int) -> bool:
        """A commit's pointer is unchanged, cleared (metadata), or names a block it wrote."""
        if pointer == previous or (pointer == 0 and kind == fmt.META):
            return True
        return self.in_commit.get(pointer) == kind


def verify_file(
    fd: int, path: str, header: fmt.FileHeader, state: State, progress: Progress | None = None
) -> VerifyReport:
    report = _Verifier(fd, path, header).run(state.end, progress)
    size = os.fstat(fd).st_size
    report.tail_bytes = max(size - state.end, 0)
    if report.commits != state.seq and not report.problems:
        report.problems.append((state.end, f"found {report.commits} commits, expected {state.seq}"))
    later = intact_commit_after(fd, header, state, size) if report.tail_bytes else None
    if later is not None:
        report.problems.append(
            (state.end, f"damaged block after the last commit; an intact commit follows at {later}")
        )
    return report
