"""The read side of :class:`klepto.records.RecordFile`: opening, reading, following, closing.

``RecordFileBase`` is everything a record file object does whether it was opened for
reading or writing: it knows the last commit (a reader, as of opening or ``refresh()``; the
writer, its own, plus its uncommitted records), serves the ``Sequence`` API from it, and
follows a file that another process writes. The write API is added by ``RecordFile`` in
:mod:`klepto.records`.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any, TypeVar, overload

from klepto import _recordformat as fmt
from klepto._recordcreate import RecordFileClosed, WriterClaim, recover
from klepto._recordindex import FrameIndex
from klepto._recordread import FrameReader
from klepto._recordscan import (  # type: ignore[attr-defined]
    InvalidRecordFile,
    Located,
    State,
    intact_commit_after,
    locate,
    pread,
)
from klepto._recordverify import VerifyReport, verify_file
from klepto._recordwriter import _UNSET, Writer, sync
from klepto.errors import CorruptRecordError

logger = logging.getLogger("klepto.records")
_NO_LOCK = contextlib.nullcontext()
_Self = TypeVar("_Self", bound="RecordFileBase")


class RecordFileBase(Sequence[Any]):
    """Opening, reading and following a record file (see :class:`klepto.records.RecordFile`)."""

    _path: str
    _mode: str
    _durability: str
    encoding: str | None
    _clock: Callable[[], int]
    _sealed_commits: bool

    def _init_state(self) -> None:
        self._fd: int | None = None
        self._writer: Writer | None = None
        self._claim: WriterClaim | None = None
        self._lock = threading.RLock()
        self._in_transaction = False
        self._pid = os.getpid()
        self._identity: tuple[int, int] = (0, 0)

    def _attach(self, fd: int) -> None:
        """Read the header and the last commit of the open file ``fd``; recover if writing.

        The object is changed only once everything succeeded; the caller closes ``fd`` on
        an exception.
        """
        info = os.fstat(fd)
        head = pread(fd, fmt.DATA_START, 0)
        try:
            header = fmt.decode_header(head)
        except fmt.NotARecordFile as exc:
            raise InvalidRecordFile(str(exc), path=self._path, offset=0) from None
        located = locate(fd, self._path, header, head)
        if self.writable:
            recover(fd, self._path, located, durable=self.durable, header=header)
        elif located.problems:
            logger.warning(
                "%s: reading as of commit %d (%d records): %s",
                self._path,
                located.state.seq,
                located.state.count,
                "; ".join(located.problems),
            )
        elif located.tail_bytes:
            self._report_tail(fd, header, located)
        writer = None
        if self.writable:
            writer = Writer(
                fd,
                self._path,
                header,
                located.state,
                durable=self.durable,
                clock=self._clock,
                encoding=self.encoding or "utf-8",
                sealing=self._sealed_commits,
            )
        self._header = header
        self._state = located.state
        self._reader = FrameReader(self._path, header, _reading_through(self))
        self._identity = (info.st_dev, info.st_ino)
        self._writer = writer
        self._fd = fd

    def _report_tail(self, fd: int, header: fmt.FileHeader, located: Located) -> None:
        """Log what a reader ignores after the last commit: a commit being written, a torn
        one, or (a warning) damage with intact commits after it, which a writer refuses."""
        later = intact_commit_after(fd, header, located.state, located.size)
        if later is None:
            logger.debug(
                "%s: ignoring %d bytes after the last commit (being written, or torn)",
                self._path,
                located.tail_bytes,
            )
            return
        logger.warning(
            "%s: reading as of commit %d (%d records): a damaged block at offset %d is"
            " followed by an intact commit at offset %d",
            self._path,
            located.state.seq,
            located.state.count,
            located.state.end,
            later,
        )

    def close(self) -> None:
        """Close the file; anything not committed is discarded. Closing twice is harmless."""
        with self._lock:
            if self._fd is None:
                return
            writer = self._writer
            try:
                if writer is not None and os.getpid() == self._pid:
                    self._discard_uncommitted(writer)
            finally:
                self._release()

    def _discard_uncommitted(self, writer: Writer) -> None:
        if writer.dirty:
            logger.debug(
                "%s: closing discards %d uncommitted records",
                self._path,
                writer.count - writer.committed.count,
            )
        assert self._fd is not None
        if os.fstat(self._fd).st_size > writer.committed.end:
            os.ftruncate(self._fd, writer.committed.end)

    def _release(self) -> None:
        """Close the file descriptor and give up the writer claim."""
        fd, self._fd = self._fd, None
        self._writer = None
        claim, self._claim = self._claim, None
        try:
            if fd is not None:
                os.close(fd)
        finally:
            if claim is not None:
                claim.release()

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        # At interpreter exit module globals (os...) may be gone; the system closes the
        # file, and an uncommitted tail is what a killed writer leaves (discarded later).
        if getattr(self, "_fd", None) is None or _finalizing():
            return
        try:
            self.close()
        except OSError as exc:  # a finalizer cannot raise; report instead of hiding it
            path = getattr(self, "_path", "?")
            logger.warning("%s: error while closing an abandoned record file: %s", path, exc)

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        return self._path

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def writable(self) -> bool:
        return self._mode != "r"

    @property
    def durability(self) -> str:
        return self._durability

    @property
    def durable(self) -> bool:
        return self._durability == "durable"

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def file_id(self) -> str:
        """A random identifier of this file, new for every created or rewritten file."""
        return self._header.file_id.hex()

    @property
    def commit_seq(self) -> int:
        """Number of commits in the file (as seen by this object)."""
        return self._committed().seq

    @property
    def committed_count(self) -> int:
        """Number of committed records (``len`` also counts a writer's uncommitted ones)."""
        return self._committed().count

    @property
    def commit_time_ns(self) -> int:
        """Wall-clock time of the last full commit, in nanoseconds since the epoch (0: none);
        a commit written as a sealed record carries no time."""
        return self._committed().timestamp_ns

    def _committed(self) -> State:
        self._check_open()
        writer = self._writer
        return writer.committed if writer is not None else self._state

    def _check_open(self) -> None:
        if self._fd is None:
            raise RecordFileClosed(f"record file {self._path} is closed")

    def __str__(self) -> str:
        if self._fd is None:
            return f'"{self._path}" (closed)'
        how = "writing" if self.writable else "reading"
        return f'"{self._path}" opened for {how} with {len(self):,} records'

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"

    def _read_at(self, offset: int, size: int) -> bytes:
        writer = self._writer
        if writer is not None:
            return writer.read_at(offset, size)
        fd = self._fd
        if fd is None:
            raise RecordFileClosed(f"record file {self._path} is closed")
        return pread(fd, size, offset)

    def __len__(self) -> int:
        writer = self._writer
        if writer is not None:
            return writer.count
        self._check_open()
        return self._state.count

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._slice(index)
        count = len(self)
        i = operator.index(index)
        if i < 0:
            i += count
        if not 0 <= i < count:
            raise IndexError(f"record index {index} out of range ({count} records)")
        record = self._raw_record(i)
        return record if self.encoding is None else record.decode(self.encoding)

    def _raw_record(self, i: int) -> bytes:
        writer = self._writer
        if writer is None:
            state = self._state
            if i >= state.count:  # only after a rewrite replaced the file with a shorter one
                raise IndexError(f"record index {i} out of range ({state.count} records)")
            return self._reader.record(state.index, state.dictionary, i)
        with self._lock:
            if i >= writer.framed:
                return writer.pending[i - writer.framed]
            return self._reader.record(writer.index, writer.dictionary, i)

    def _slice(self, index: slice) -> list[Any]:
        span = range(len(self))[index]
        if span.step == 1:
            return list(self.records(span.start, span.stop))
        return [self[i] for i in span]

    def __iter__(self) -> Iterator[Any]:
        return self.records()

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        """Iterate over records ``start .. stop - 1`` (0-based; negative counts from the end).

        The range is fixed when this is called: later commits are not included.
        """
        count = len(self)
        start, stop, _ = slice(start, stop).indices(count)
        return self._iter_range(start, stop)

    def _iter_range(self, start: int, stop: int) -> Iterator[Any]:
        # A frame's records come as one list; chaining the lists keeps the per-record step
        # in C (a generator yielding every record would cost a frame resumption each).
        return chain.from_iterable(self._batches(start, stop))

    def _batches(self, start: int, stop: int) -> Iterator[list[Any]]:
        i = start
        while i < stop:
            batch = self._batch(i, stop)
            yield batch
            i += len(batch)

    def _batch(self, i: int, stop: int) -> list[Any]:
        """The records from ``i`` to the end of its frame (or ``stop``)."""
        writer = self._writer
        if writer is None:
            self._check_open()
            state = self._state
            return self._frame_batch(state.index, state.dictionary, i, stop)
        with self._lock:
            if i < writer.framed:
                return self._frame_batch(
                    writer.index, writer.dictionary, i, min(stop, writer.framed)
                )
            batch = writer.pending[i - writer.framed : stop - writer.framed]
        if self.encoding is None:
            return batch
        return [record.decode(self.encoding) for record in batch]

    def _frame_batch(self, index: FrameIndex, dictionary: int, i: int, stop: int) -> list[Any]:
        first, offset = self._reader.find(index, i)
        frame = self._reader.frame(offset, dictionary, i)
        k1 = min(len(frame), stop - first)
        if frame.first != first or not 0 <= i - first < k1:
            raise CorruptRecordError(
                f"frame does not hold record {i}", path=self._path, offset=offset
            )
        return frame.records(i - first, k1, self.encoding)

    def record_chunks(self, index: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Record ``index`` as ``bytes`` chunks, never holding a large record whole.

        A record stored in a frame of its own is checked (CRC) in a first pass over the
        file and then decompressed piece by piece; smaller records are simply sliced.
        """
        i = range(len(self))[index]
        writer = self._writer
        if writer is not None and i >= writer.framed:
            record = self._raw_record(i)
        else:
            with self._lock if writer is not None else _NO_LOCK:
                index_, dictionary = self._index_and_dictionary()
                offset = self._reader.find(index_, i)[1]
                streamed = self._reader.stream(offset, dictionary, chunk_size)
            if streamed is not None:
                yield from streamed
                return
            record = self._raw_record(i)
        view = memoryview(record)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])

    def _index_and_dictionary(self) -> tuple[FrameIndex, int]:
        writer = self._writer
        if writer is not None:
            return writer.index, writer.dictionary
        self._check_open()
        state = self._state
        return state.index, state.dictionary

    def get_metadata(self) -> bytes | None:
        """The metadata as of the last commit (or ``refresh()``); a writer sees its own."""
        writer = self._writer
        if writer is not None:
            with self._lock:
                pending = writer.pending_metadata()
                if pending is not _UNSET:
                    return pending  # type: ignore[no-any-return]
                offset = writer.metadata
        else:
            self._check_open()
            offset = self._state.metadata
        return self._reader.metadata(offset)

    def refresh(self) -> bool:
        """See commits made since opening (or the last refresh); ``True`` if there were any.

        A file replaced by a rewrite (``os.replace``) is reopened.
        """
        self._check_open()
        if self._writer is not None:
            return False
        with self._lock:
            if self._replaced():
                return self._reopen_replaced()
            assert self._fd is not None
            head = pread(self._fd, fmt.DATA_START, 0)
            located = locate(self._fd, self._path, self._header, head, self._state, extend=False)
            changed = located.state.seq != self._state.seq
            self._state = located.state
            return changed

    def _replaced(self) -> bool:
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) != self._identity

    def _reopen_replaced(self) -> bool:
        old = self._fd
        fd = os.open(self._path, os.O_RDONLY)
        try:
            self._attach(fd)
        except BaseException:
            os.close(fd)
            raise
        assert old is not None
        os.close(old)
        logger.info("%s: the file was replaced (rewritten); reopened it", self._path)
        return True

    def follow(
        self,
        start: int | None = None,
        *,
        poll_interval: float = 0.05,
        timeout: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[RecordFileBase], object] | None = None,
    ) -> Iterator[Any]:
        """Yield records as they are committed, polling with ``refresh()``.

        Starts at record ``start`` (default: the current end, like ``tail -f``). Stops when
        no new commit arrived for ``timeout`` seconds (never, by default). ``on_change`` is
        called with this object whenever a refresh found new commits.
        """
        i = len(self) if start is None else range(len(self) + 1)[start]
        idle_since = clock()
        while True:
            count = len(self)
            if i < count:
                yield from self._iter_range(i, count)
                i = count
                idle_since = clock()
                continue
            if timeout is not None and clock() - idle_since >= timeout:
                return
            sleep(poll_interval)
            if self.refresh() and on_change is not None:
                on_change(self)

    def verify(
        self,
        *,
        raise_errors: bool = False,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> VerifyReport:
        """Check every checksum and structural link of the committed file.

        Returns a :class:`VerifyReport`; with ``raise_errors=True`` a damaged file raises
        :class:`CorruptRecordError` for the first problem instead. ``progress(done, total)``
        is called as the walk advances, in bytes checked of the committed total.
        """
        self._check_open()
        assert self._fd is not None
        with self._lock:
            committed = self._committed()
            report = verify_file(self._fd, self._path, self._header, committed, progress)
        if raise_errors:
            report.raise_if_damaged()
        return report

    def sync(self) -> None:
        """Make everything committed so far durable now (``fsync``), whatever the mode."""
        self._check_open()
        assert self._fd is not None
        sync(self._fd)


def _reading_through(file: RecordFileBase) -> Callable[[int, int], bytes]:
    """``file._read_at`` without a strong reference: a dropped file is then freed (and its
    descriptor and writer lock released) at once, not whenever the cycle collector runs."""
    owner = weakref.ref(file)

    def read(offset: int, size: int) -> bytes:
        alive = owner()
        if alive is None:
            raise RecordFileClosed("the record file was closed")
        return alive._read_at(offset, size)

    return read
