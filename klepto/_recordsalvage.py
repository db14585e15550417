"""``RecordFile.salvage``: copy the longest consistent prefix of whole commits of a damaged
record file into a new file, and say what was dropped.

Opening a file whose committed part is damaged raises (a reader never guesses). Salvage is
the explicit recovery mode: it walks the file from its first block, checks every block's
checksum, decodes every frame, and keeps each commit whose blocks are all intact and whose
sequence number, record count and checksum chain match. The first damage ends the walk:
nothing after it can be trusted (a later commit may depend on a lost one). The copy keeps
the commit boundaries and the metadata of every kept commit; a warning names the commits,
records and bytes that were dropped. The source is only read.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from klepto import _recordformat as fmt
from klepto._fs import pread
from klepto._recordcreate import WriterClaim, create_file, format_of
from klepto._recordread import FrameReader
from klepto._recordscan import InvalidRecordFile, body_crc, walker_for
from klepto._recordwriter import Writer
from klepto.errors import CorruptRecordError

__all__ = ["SalvageReport", "salvage"]

logger = logging.getLogger("klepto.records")


@dataclass
class SalvageReport:
    """What :func:`salvage` kept and dropped. ``problem`` is ``(offset, reason)`` of the
    damage that ended the walk, or ``None`` when the whole file was intact."""

    source: str
    destination: str
    commits: int = 0
    records: int = 0
    kept_bytes: int = 0
    dropped_bytes: int = 0
    dropped_records: int = 0
    problem: tuple[int, str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.problem is None and not self.dropped_bytes

    def __str__(self) -> str:
        head = (
            f"{self.source} -> {self.destination}: kept {self.commits} commits "
            f"({self.records} records)"
        )
        if self.complete:
            return head + "; nothing was damaged"
        where = f" at offset {self.problem[0]}: {self.problem[1]}" if self.problem else ""
        return (
            f"{head}; dropped {self.dropped_bytes} bytes after the last intact commit"
            f" (at least {self.dropped_records} uncommitted or unreadable records){where}"
        )


class _Walk:
    """The commits of ``fd`` in order, each checked whole before it is handed on."""

    def __init__(self, fd: int, path: str, header: fmt.FileHeader, report: SalvageReport):
        self.fd = fd
        self.header = header
        self.report = report
        self.reader = FrameReader(path, header, lambda offset, size: pread(fd, size, offset))
        self.seq = 0
        self.count = 0
        self.dictionary = 0
        self.metadata: bytes | None = None

    def run(self, writer: Writer, size: int) -> int:
        """Copy every intact commit into ``writer``; the end offset of the last one."""
        walker = walker_for(self.fd, self.header, fmt.DATA_START, size)
        pending: list[bytes] = []
        meta: bytes | object | None = _UNCHANGED
        chain, blocks, end = 0, 0, fmt.DATA_START
        for block in walker:
            if block.kind == fmt.SEALED:  # a whole commit of one record (checked by the walk)
                reason = self._bad_sealed(block, blocks)
                if reason:
                    return self._stop(block.offset, reason, end, pending)
                self._publish_sealed(writer, bytes(walker.body(block)))
                end = block.end
                continue
            body = walker.body(block) if block.kind == fmt.COMMIT else None
            if block.kind == fmt.COMMIT:
                commit = fmt.decode_commit(block, body, self.header.file_id)  # type: ignore[arg-type]
                reason = self._bad_commit(commit, pending, chain, blocks)
                if reason:
                    return self._stop(block.offset, reason, end, pending)
                self._publish(writer, pending, meta, commit)  # type: ignore[arg-type]
                pending, meta, chain, blocks, end = [], _UNCHANGED, 0, 0, block.end
                continue
            reason = self._take(block, pending)
            if reason:
                return self._stop(block.offset, reason, end, pending)
            if block.kind == fmt.META:
                meta = pread(self.fd, block.body_len, block.body_start)
            chain, blocks = fmt.crc32(block.raw, chain), blocks + 1
        if walker.reason is not None:
            what = "damaged block header" if walker.reason == "invalid" else "file ends in a block"
            return self._stop(walker.stop, what, end, pending)
        if pending or walker.stop != end:
            return self._stop(end, "blocks after the last commit (a torn tail)", end, pending)
        return end

    def _take(self, block: fmt.Block, pending: list[bytes]) -> str | None:
        """Check ``block`` and collect its records; the reason it is damaged, or None."""
        if body_crc(self.fd, block) != block.body_crc:
            return f"{fmt.KIND_NAMES.get(block.kind, block.kind)} block checksum mismatch"
        if block.kind == fmt.DICT:
            self.dictionary = block.offset
        if block.kind != fmt.FRAME:
            return None
        if block.a != self.count + len(pending):
            return f"frame starts at record {block.a}, expected {self.count + len(pending)}"
        try:
            body = pread(self.fd, block.body_len, block.body_start)
            frame = self.reader.decode(block, body, self.dictionary)
        except (CorruptRecordError, zlib.error) as exc:
            return str(exc)
        if len(frame) != block.b:
            return "frame holds a different number of records"
        pending.extend(bytes(record) for record in frame.records(0, len(frame), None))
        return None

    def _bad_commit(self, commit: Any, pending: list[bytes], chain: int, blocks: int) -> str | None:
        if commit is None:
            return "damaged commit block"
        if commit.seq != self.seq + 1:
            return f"commit {commit.seq} follows commit {self.seq}"
        if commit.record_count != self.count + len(pending):
            return "commit record count does not match its frames"
        if commit.chain_crc != chain or commit.n_blocks != blocks:
            return "commit checksum chain does not match its blocks"
        return None

    def _bad_sealed(self, block: fmt.Block, blocks: int) -> str | None:
        if blocks:
            return "sealed record inside another commit"
        if block.a != self.count:
            return f"sealed record {block.a}, expected {self.count}"
        return None

    def _publish_sealed(self, writer: Writer, record: bytes) -> None:
        writer.seal(record)
        self.seq, self.count = self.seq + 1, self.count + 1
        self.report.commits += 1
        self.report.records = self.count

    def _publish(self, writer: Writer, pending: list[bytes], meta: Any, commit: fmt.Commit) -> None:
        for record in pending:
            writer.append(record)
        if commit.metadata == 0:
            meta = None
        if meta is not _UNCHANGED:
            self.metadata = meta
            writer.set_metadata(self.metadata)
        writer.commit()
        self.seq, self.count = commit.seq, commit.record_count
        self.report.commits += 1
        self.report.records = self.count

    def _stop(self, offset: int, reason: str, end: int, pending: list[bytes]) -> int:
        self.report.problem = (offset, reason)
        self.report.dropped_records = len(pending)
        return end


_UNCHANGED = object()


def salvage(source: str, destination: str, *, durability: str = "flush") -> SalvageReport:
    """Write the longest intact prefix of whole commits of ``source`` to ``destination``
    (which must not exist); a warning names what was dropped. See the module docstring."""
    source, destination = os.fspath(source), os.fspath(destination)
    if os.path.lexists(destination):
        raise FileExistsError(f"salvage never overwrites: {destination} exists")
    report = SalvageReport(source, destination)
    fd = os.open(source, os.O_RDONLY)
    try:
        try:
            header = fmt.decode_header(pread(fd, fmt.DATA_START, 0))
        except fmt.NotARecordFile as exc:
            raise InvalidRecordFile(f"nothing to salvage: {exc}", path=source, offset=0) from None
        size = os.fstat(fd).st_size
        walk = _Walk(fd, source, header, report)
        _write(destination, header, durability, lambda writer: _finish(walk, writer, size))
    finally:
        os.close(fd)
    if not report.complete:
        logger.warning("salvage: %s", report)
    return report


def _finish(walk: _Walk, writer: Writer, size: int) -> None:
    end = walk.run(writer, size)
    walk.report.kept_bytes = end
    walk.report.dropped_bytes = size - end


def _write(destination: str, header: fmt.FileHeader, durability: str, fill: Any) -> None:
    claim = WriterClaim(destination, os_lock=True, timeout=0.0)
    try:
        fd = create_file(
            destination,
            format_of(header),
            durable=durability == "durable",
            clock=time.time_ns,
            fill=fill,
        )
        os.close(fd)
    finally:
        claim.release()
