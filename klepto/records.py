"""Record files: append-only, transactional, compressed sequences of byte or text records.

A :class:`RecordFile` is a ``Sequence`` of records (``bytes``, or ``str`` with an
``encoding``). One writer appends records and commits them atomically, together with an
optional metadata blob; any number of readers, in threads and processes, see whole commits
only. Records are compressed in small independent frames and found through an index, so
reading record ``i`` touches one frame. See docs/records.rst for use and docs/formats.rst
for the byte layout. :class:`CaptureFile` is a drop-in facade with CaptureFile's API.

A commit of one small record is written as one *sealed record* (one block, one write):
:meth:`RecordFile.commit_record` is the cheap way to commit records one at a time.

Durability: ``durability="flush"`` (the default) survives a killed process: ``commit()``
hands everything to the operating system before it returns. ``durability="durable"`` also
survives an operating-system crash or power loss: every commit is fsynced once (and the
directory is fsynced when the file is created).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from klepto import _recordformat as fmt
from klepto import _recordwriter
from klepto._recordbase import RecordFileBase
from klepto._recordcreate import (
    RecordFileClosed,
    RecordFileLocked,
    RecordFileReadOnly,
    Replacement,
    WriterClaim,
    create_file,
    format_of,
)
from klepto._recordsalvage import SalvageReport
from klepto._recordscan import InvalidRecordFile
from klepto._recordverify import VerifyReport
from klepto._recordwriter import Writer
from klepto.errors import CorruptRecordError

__all__ = [
    "CaptureFile",
    "CaptureFileAlreadyOpen",
    "CaptureFileNotOpen",
    "CaptureFileNotOpenForWrite",
    "CorruptRecordError",
    "InvalidCaptureFile",
    "InvalidRecordFile",
    "RecordFile",
    "RecordFileClosed",
    "RecordFileLocked",
    "RecordFileReadOnly",
    "SalvageReport",
    "VerifyReport",
    "write_records",
]

logger = logging.getLogger("klepto.records")

DURABILITY = ("flush", "durable")
MODES = ("r", "a", "w", "x")
DEFAULT_FRAME_SIZE = 6144  # measured: the best balance of ratio, append, iteration, random reads
DEFAULT_DICTIONARY_SIZE = 8192
DEFAULT_FANOUT = 256


class RecordFile(RecordFileBase):
    """An append-only, transactional file of records (see the module docstring).

    ``mode``: ``"r"`` read; ``"a"`` write, creating the file if missing; ``"w"`` write a new
    empty file (replacing any old one atomically); ``"x"`` write a new file, failing if one
    exists. ``metadata`` is the initial metadata of a file this call creates. ``encoding``
    ``None`` returns records as ``bytes``; otherwise as ``str`` (``str`` records are always
    written in ``encoding``, UTF-8 when it is ``None``). ``lock=False`` skips the inter-process
    writer lock (a second writer in the same process is refused regardless); ``lock_timeout``
    is how long to wait for it (default: fail at once). The format options
    (``compression``: ``"zlib"``, ``"zstd"`` or ``None``; ``level``; ``frame_size``;
    ``dictionary_size``, 0 for none) apply when the file is created and are read back from
    it afterwards. ``sealed_commits=False`` writes every commit in full, with its commit
    pointer (see :meth:`commit_record`): slower for commits of one small record, but then
    a file cut short after an acknowledged commit is reported as damaged, where the sealed
    records after the last full commit would look like a torn write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "r",
        *,
        encoding: str | None = None,
        durability: str = "flush",
        lock: bool = True,
        metadata: bytes | None = None,
        compression: str | None = "zlib",
        level: int | None = None,
        frame_size: int = DEFAULT_FRAME_SIZE,
        dictionary_size: int = DEFAULT_DICTIONARY_SIZE,
        lock_timeout: float = 0.0,
        clock: Callable[[], int] = time.time_ns,
        sealed_commits: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, not {durability!r}")
        self._path = os.fspath(path)
        self._mode = mode
        self.encoding = encoding
        self._durability = durability
        self._use_lock = lock
        self._initial_metadata = metadata
        self._format = self._format_options(compression, level, frame_size, dictionary_size)
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._sealed_commits = sealed_commits
        self._init_state()
        self._open()

    @staticmethod
    def _format_options(
        compression: str | None, level: int | None, frame_size: int, dictionary_size: int
    ) -> dict[str, int]:
        codec = fmt.codec_id(compression)
        if not 64 <= frame_size <= 1 << 30:
            raise ValueError(f"frame_size must be between 64 bytes and 1 GiB, not {frame_size}")
        if dictionary_size < 0 or dictionary_size > 1 << 20:
            raise ValueError("dictionary_size must be between 0 and 1 MiB")
        if codec == fmt.CODEC_IDS["zlib"] and dictionary_size > 32768:
            raise ValueError("zlib preset dictionaries are at most 32 KiB")
        level = fmt.DEFAULT_LEVELS[codec] if level is None else level
        return {
            "frame_size": frame_size,
            "codec": codec,
            "level": level,
            "fanout": DEFAULT_FANOUT,
            "dictionary_size": dictionary_size if codec else 0,
        }

    def _open(self) -> None:
        try:
            if self.writable:
                self._claim = WriterClaim(
                    self._path, os_lock=self._use_lock, timeout=self._lock_timeout
                )
            fd = self._open_fd()
            try:
                self._attach(fd)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self._release()
            raise

    def _open_fd(self) -> int:
        if self._mode == "r":
            return os.open(self._path, os.O_RDONLY)
        exists = os.path.exists(self._path)
        if self._mode == "x" and exists:
            raise FileExistsError(f"record file {self._path} already exists")
        if self._mode == "w" or not exists:
            return create_file(
                self._path,
                self._format,
                durable=self.durable,
                clock=self._clock,
                fill=self._fill_initial,
            )
        return os.open(self._path, os.O_RDWR)

    def _fill_initial(self, writer: Writer) -> None:
        if self._initial_metadata is not None:
            writer.set_metadata(bytes(self._initial_metadata))
            writer.commit()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as a reader of the same path (a writer cannot travel between processes)."""
        return (_reopen_reader, (self._path, self.encoding))

    def _require_writer(self, action: str) -> Writer:
        writer = self._writer
        if writer is None:
            self._check_open()
            raise RecordFileReadOnly(f"cannot {action}: {self._path} is open for reading")
        if os.getpid() != self._pid:
            raise RecordFileLocked(
                f"{self._path} was opened for writing in process {self._pid};"
                " open it again in this process"
            )
        return writer

    def append(self, record: bytes | bytearray | memoryview | str) -> int:
        """Append one record; return its 0-based number. Visible to others after ``commit()``."""
        writer = self._writer
        if writer is None:
            self._require_writer("append")
        with self._lock:
            return writer.append(record)  # type: ignore[union-attr]

    def extend(self, records: Iterable[bytes | bytearray | memoryview | str]) -> range:
        """Append every record of ``records``; return the range of their numbers."""
        start = len(self)
        append = self.append
        for record in records:
            append(record)
        return range(start, len(self))

    def append_stream(self, source: BinaryIO | Iterable[bytes | memoryview]) -> int:
        """Append one record read from a binary file object or an iterable of chunks.

        The record is compressed and written as it is read, so it never has to fit in
        memory; records larger than 4 GiB are allowed. Returns its number.
        """
        writer = self._require_writer("append")
        chunks = _read_chunks(source) if hasattr(source, "read") else source  # type: ignore[arg-type]
        with self._lock:
            return writer.append_stream(chunks)

    def set_metadata(self, metadata: bytes | bytearray | memoryview | None) -> None:
        """Replace the file's metadata; it is committed with the next ``commit()``."""
        writer = self._require_writer("set metadata")
        value = None if metadata is None else _as_bytes(metadata)
        with self._lock:
            writer.set_metadata(value)

    def commit(self) -> bool:
        """Atomically make all appended records and the metadata visible; ``False`` if none.

        If it raises (an I/O error, a full disk), the file is left at the last commit that
        reached it whole and the uncommitted records are discarded; the object stays usable.
        """
        writer = self._require_writer("commit")
        with self._lock:
            try:
                return writer.commit()
            except BaseException:
                self._resync_after_failure(writer)
                raise

    def commit_record(self, record: bytes | bytearray | memoryview | str) -> int:
        """Append ``record`` and commit it (with anything appended before); its number.

        The cheapest way to commit records one at a time: a record committed alone (up to
        64 KiB, 255 bytes in a compressed file) is written as one *sealed record*, with one
        system call. Failures leave the file as ``commit()`` does.
        """
        writer = self._writer
        if writer is None or writer.forks != _recordwriter._forks:
            writer = self._require_writer("commit")
        with self._lock:
            try:
                return writer.seal(record)
            except BaseException:
                self._resync_after_failure(writer)
                raise

    def committer(self) -> Callable[[bytes | bytearray | memoryview | str], int]:
        """A function that does what :meth:`commit_record` does without taking this object's
        lock: for a caller that is the only user of this object, from one thread at a time
        (the operation store). It follows the file through :meth:`rewrite`."""
        self._require_writer("commit")

        def commit_record(record: bytes | bytearray | memoryview | str) -> int:
            writer = self._writer
            if writer is None or writer.forks != _recordwriter._forks:
                writer = self._require_writer("commit")
            try:
                # seal() without its own call (the hot path of the operation store):
                if (
                    type(record) is bytes
                    and not writer.pending
                    and writer.sample is None
                    and writer._sealed(record)
                ):
                    return writer.framed - 1
                return writer.seal(record)
            except BaseException:
                self._resync_after_failure(writer)
                raise

        return commit_record

    def _resync_after_failure(self, writer: Writer) -> None:
        try:
            writer.resync()
        except Exception as exc:
            logger.error(
                "%s: after a failed commit the file could not be re-read (%s); it is closed,"
                " open it again",
                self._path,
                exc,
            )
            self._release()
        self._reader.clear()

    def rollback(self) -> None:
        """Discard every record and metadata change since the last commit."""
        writer = self._require_writer("roll back")
        with self._lock:
            writer.resync()
            self._reader.clear()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[RecordFile]:
        """Commit on success, roll back on an exception (nested blocks join the outer one)."""
        self._require_writer("start a transaction")
        if self._in_transaction:
            yield self
            return
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        else:
            self.commit()
        finally:
            self._in_transaction = False

    @staticmethod
    def salvage(
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        *,
        durability: str = "flush",
    ) -> SalvageReport:
        """Recovery mode for a damaged file: copy the longest intact prefix of whole commits
        of ``source`` into the new file ``destination``, with a ``logging.WARNING`` naming
        the commits and bytes dropped (never silently). Returns a :class:`SalvageReport`."""
        from klepto._recordsalvage import salvage

        return salvage(os.fspath(source), os.fspath(destination), durability=durability)

    @contextlib.contextmanager
    def rewrite(self, **format_options: Any) -> Iterator[RecordFile]:
        """Build a replacement of this file and publish it atomically (compaction).

        Yields an empty writer on a temporary file beside this one, with the same format
        and durability; fill it (``append``, ``set_metadata``). On a normal exit it is
        committed, moved over this file with ``os.replace`` while the writer lock is held,
        and this object continues on the new file. Readers pick it up on ``refresh()``.
        On an exception the temporary file is removed and nothing changes.
        """
        writer = self._require_writer("rewrite")
        if writer.dirty:
            raise ValueError("commit or roll back before rewriting a record file")
        options = format_of(self._header)
        if format_options:
            options = self._format_options(
                format_options.pop("compression", fmt.CODEC_NAMES[self._header.codec]),
                format_options.pop("level", None),
                format_options.pop("frame_size", self._header.frame_size),
                format_options.pop("dictionary_size", self._header.dictionary_size),
            )
        if format_options:
            raise TypeError(f"unknown format options: {', '.join(format_options)}")
        replacement = Replacement(
            self._path,
            options,
            lambda temp: RecordFile(
                temp, "a", encoding=self.encoding, lock=False, sealed_commits=self._sealed_commits
            ),
        )
        try:
            yield replacement.file
            replacement.publish(durable=self.durable)
        except BaseException:
            replacement.abandon()
            raise
        with self._lock:
            old, self._fd = self._fd, None
            assert old is not None
            os.close(old)
            fd = os.open(self._path, os.O_RDWR)
            try:
                self._attach(fd)
            except BaseException:
                os.close(fd)
                self._release()
                raise


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"metadata must be bytes or None, not {type(data).__name__}")


def _read_chunks(source: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = source.read(size)
        if not chunk:
            return
        yield chunk


def _reopen_reader(path: str, encoding: str | None) -> RecordFile:
    return RecordFile(path, "r", encoding=encoding)


def write_records(
    path: str | os.PathLike[str],
    records: Iterable[bytes | str],
    *,
    metadata: bytes | None = None,
    encoding: str | None = None,
    durability: str = "flush",
    lock: bool = True,
    lock_timeout: float = 0.0,
    **format_options: Any,
) -> int:
    """Write a complete record file atomically: all ``records`` (and ``metadata``), one commit.

    The file is built beside ``path`` and moved over it with ``os.replace``, so readers see
    the old file or the new one, never a partial one (the old one is never read: it may be
    damaged). Takes the writer lock, so it fails with :class:`RecordFileLocked` while a
    writer has ``path`` open. ``format_options`` are :class:`RecordFile`'s ``compression``,
    ``level``, ``frame_size`` and ``dictionary_size``. Returns the number of records.
    """
    if durability not in DURABILITY:
        raise ValueError(f"durability must be one of {DURABILITY}, not {durability!r}")
    options = RecordFile._format_options(
        format_options.pop("compression", "zlib"),
        format_options.pop("level", None),
        format_options.pop("frame_size", DEFAULT_FRAME_SIZE),
        format_options.pop("dictionary_size", DEFAULT_DICTIONARY_SIZE),
    )
    if format_options:
        raise TypeError(f"unknown options: {', '.join(format_options)}")
    written = []

    def fill(writer: Writer) -> None:
        for record in records:
            writer.append(record)
        if metadata is not None:
            writer.set_metadata(_as_bytes(metadata))
        writer.commit()
        written.append(writer.count)

    target = os.fspath(path)
    claim = WriterClaim(target, os_lock=lock, timeout=lock_timeout)
    try:
        fd = create_file(
            target,
            options,
            durable=durability == "durable",
            clock=time.time_ns,
            fill=fill,
            encoding=encoding or "utf-8",
        )
        os.close(fd)
    finally:
        claim.release()
    return written[0]


from klepto._capturefile import (  # noqa: E402  (the facade is built on RecordFile)
    CaptureFile,
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CaptureFileNotOpenForWrite,
    InvalidCaptureFile,
)
