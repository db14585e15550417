"""The incremental log of a checkpointed computation: numbered entries, dropped by checkpoints.

Every entry has a sequence number (1, 2, 3, ... with no gaps) and a sealed value. Two
places can hold them:

:class:`SegmentLog`, record files in a directory (the default)
    ``<name>.<first seq, 20 digits>.seg`` files; a segment holds consecutive entries from
    its first on, one record each (``seq`` as 8 big-endian bytes, then the sealed value),
    each committed before :meth:`append` returns. A checkpoint starts a new segment, so
    whole segments fall behind checkpoints and are deleted (oldest first) once a durable
    checkpoint covers them.

:class:`ArchiveLog`, keys of an archive
    ``("klepto.cpt", ns, "log", seq)`` holds the sealed value, stored with the archive's
    atomic ``add``. With a SQL archive the whole computation (checkpoints and log) is in the
    database, so any host can recover it.

Reading checks the numbering: a missing or repeated entry raises
:class:`~klepto.errors.CorruptRecordError` (or ``CorruptArchiveError``) rather than give a
state that silently lacks an update.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections.abc import Iterator
from typing import Any

from klepto._fs import fsync_dir, makedirs
from klepto.errors import CorruptArchiveError, CorruptionError, CorruptRecordError, LockedError
from klepto.logs._branchstore import gallop
from klepto.logs._cptstore import PREFIX
from klepto.records import RecordFile

__all__ = ["ArchiveLog", "SegmentLog"]

logger = logging.getLogger("klepto.logs.checkpoint")

SEGMENT_FORMAT = "klepto.cptlog"
SEGMENT_VERSION = 1
_SEQ = struct.Struct(">Q")


class SegmentLog:
    """Entries in record-file segments under ``directory`` (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], name: str, *, durable: bool) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.name = name
        self.durable = durable
        self._pattern = re.compile(re.escape(name) + r"\.(\d{20})\.seg\Z")
        self._file: RecordFile | None = None  # the segment being appended to
        self._next = 0  # the sequence number that segment expects next

    @property
    def location(self) -> str:
        return self.directory

    def lock_path(self) -> str:
        makedirs(self.directory)
        return os.path.join(self.directory, f"{self.name}.lock")

    def _segment_path(self, first: int) -> str:
        return os.path.join(self.directory, f"{self.name}.{first:020d}.seg")

    def segments(self) -> list[tuple[int, str]]:
        """``(first seq, path)`` of every segment, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for file_name in names:
            match = self._pattern.match(file_name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, file_name)))
        return sorted(found)

    def _open(self, path: str, mode: str, first: int) -> RecordFile:
        meta = {"format": SEGMENT_FORMAT, "version": SEGMENT_VERSION, "name": self.name}
        meta["first"] = first
        durability = "durable" if self.durable else "flush"
        # lock=False: the Transactional's own writer lock covers every segment.
        kwargs: dict[str, Any] = {"durability": durability} if mode != "r" else {}
        if mode != "r":
            kwargs.update(lock=False, metadata=json.dumps(meta).encode("ascii"))
        file = RecordFile(path, mode, **kwargs)
        try:
            stored = json.loads(file.get_metadata() or b"null")
            if not isinstance(stored, dict) or stored.get("format") != SEGMENT_FORMAT:
                raise CorruptRecordError("not a checkpoint log segment", path=path)
            if stored.get("first") != first or stored.get("name") != self.name:
                raise CorruptRecordError("segment metadata does not match its name", path=path)
        except BaseException:
            file.close()
            raise
        return file

    def last_seq(self, floor: int) -> int:
        """The last sequence number stored (``floor`` if the log holds nothing after it)."""
        segments = self.segments()
        if not segments:
            return floor
        first, path = segments[-1]
        with self._open(path, "r", first) as file:
            count = len(file)
            if count == 0:
                return max(floor, first - 1)
            (seq,) = _SEQ.unpack_from(file[-1])
        if seq != first + count - 1:
            raise CorruptRecordError(
                f"last entry has seq {seq}, not {first + count - 1}", path=path
            )
        return max(floor, seq)  # type: ignore[no-any-return]

    def append(self, seq: int, blob: bytes) -> None:
        """Store entry ``seq`` (committed, and fsynced when durable, before returning)."""
        if self._file is None or self._next != seq:
            self._start(seq)
        file = self._file
        assert file is not None
        file.append(_SEQ.pack(seq) + blob)
        try:
            file.commit()
        except BaseException:
            self.rotate()  # reopen on the next append: the file knows what it holds
            raise
        self._next = seq + 1

    def _start(self, seq: int) -> None:
        """Open a new segment for entries from ``seq`` on (each process and each checkpoint
        starts one, so a segment never straddles a checkpoint it was written before)."""
        self.rotate()
        segments = self.segments()
        if segments:
            first, path = segments[-1]
            with self._open(path, "r", first) as last:
                end = first + len(last)
            if end > seq:
                raise CorruptRecordError(f"the log already holds entry {seq}", path=path)
            if first == seq:  # an empty segment left by a crash right after its creation
                self._file, self._next = self._open(path, "a", first), seq
                return
        makedirs(self.directory)
        self._file = self._open(self._segment_path(seq), "x", seq)
        self._next = seq
        if self.durable:
            fsync_dir(self.directory)

    def rotate(self) -> None:
        """Close the current segment; the next entry starts (or continues) a segment then."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def entries(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Every entry with a sequence number above ``after``, in order, checked for gaps."""
        expected = after + 1
        segments = self.segments()
        for index, (first, path) in enumerate(segments):
            following = segments[index + 1][0] if index + 1 < len(segments) else None
            if following is not None and following <= expected:
                continue  # wholly covered by the checkpoint
            with self._open(path, "r", first) as file:
                start = max(expected - first, 0)
                for offset, record in enumerate(file.records(start) if start < len(file) else ()):
                    (seq,) = _SEQ.unpack_from(record)
                    position = first + start + offset
                    if seq != position:
                        raise CorruptRecordError(f"entry {position} has seq {seq}", path=path)
                    if seq != expected:
                        raise CorruptRecordError(
                            f"log entries {expected}..{seq - 1} are missing", path=path
                        )
                    yield seq, record[_SEQ.size :]
                    expected += 1

    def drop_through(self, seq: int) -> int:
        """Delete the segments whose entries all have numbers up to ``seq``; how many."""
        segments = self.segments()
        doomed = []
        for index, (first, path) in enumerate(segments):
            if index + 1 < len(segments):
                last = segments[index + 1][0] - 1
            else:
                last = self.last_seq(first - 1)
            if last > seq:
                break
            doomed.append(path)
        if doomed and self._file is not None and self._file.path in doomed:
            self.rotate()
        for path in doomed:  # oldest first: what is left is always a suffix of the log
            os.unlink(path)
            logger.debug("dropped log segment %s", path)
        if doomed and self.durable:
            fsync_dir(self.directory)
        return len(doomed)

    def close(self) -> None:
        self.rotate()


class ArchiveLog:
    """Entries as keys of an archive (see the module docstring)."""

    def __init__(self, archive: Any, namespace: str) -> None:
        self.archive = archive
        self.namespace = namespace

    @property
    def location(self) -> Any:
        return self.archive

    def key(self, seq: int) -> tuple[Any, ...]:
        return (PREFIX, self.namespace, "log", seq)

    def _exists(self, seq: int) -> bool:
        if seq <= 0:
            return False
        try:
            return self.key(seq) in self.archive
        except CorruptionError:
            return True  # there, but damaged: reading it raises (never skipped)

    def last_seq(self, floor: int) -> int:
        # Entries after a checkpoint are never deleted, so they run gap-free from floor + 1.
        return gallop(self._exists, floor)

    def append(self, seq: int, blob: bytes) -> None:
        if not self.archive.add(self.key(seq), blob):
            raise LockedError(
                f"log entry {seq} of {self.namespace!r} was written by another writer first"
            )

    def entries(self, after: int) -> Iterator[tuple[int, bytes]]:
        seq = after + 1
        while True:
            try:
                blob = self.archive[self.key(seq)]
            except KeyError:
                return
            if not isinstance(blob, bytes):
                raise CorruptArchiveError("log entry is not bytes", key=self.key(seq))
            yield seq, blob
            seq += 1

    def drop_through(self, seq: int) -> int:
        doomed = []
        while self._exists(seq):
            doomed.append(seq)
            seq -= 1
        for old in reversed(doomed):  # oldest first, as for segments
            del self.archive[self.key(old)]
        return len(doomed)

    def rotate(self) -> None:
        """Nothing to do: entries are independent keys."""

    def close(self) -> None:
        """Nothing to release: the archive belongs to the caller."""
