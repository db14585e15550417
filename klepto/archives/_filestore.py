"""The engine of ``file_archive``: a shared record file, its key index and its saved tables.

Reads poll the record file (nothing but a read of the lock file's note when nobody
wrote: :mod:`klepto._recordwatch`), apply the records other processes committed since,
then find the key in the index and read one frame. Writes take
a turn on the record file (its OS lock), catch up the same way, append one record per key,
commit once, and release. After a commit the index may save a new table (every
``FLUSH_AT`` records) and the archive may compact itself (when superseded records outnumber
live ones ``compact_ratio`` to one, and there are at least ``COMPACT_MIN`` of them).

Compaction copies the live records, in write order, into a new file with a complete index
and swaps it in with ``os.replace`` while holding the lock; other processes see the new
file at their next poll and reload (their open handle keeps the old file readable until
then). The saved index is written before the swap, so a reader that notices the new file
finds its index too.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from hashlib import blake2b as _blake2b
from typing import Any

from klepto._canonical import stable_bytes
from klepto._fs import staged_copy
from klepto._recordack import retract_note
from klepto._recordbody import STREAM_MIN
from klepto._recordfollow import read_span
from klepto._recordlock import exclusive
from klepto._recordscan import InvalidRecordFile
from klepto._recordshare import (
    Change,
    SharedRecordFile,
    commit_point_of,
    frame_offset,
    frame_offsets,
)
from klepto.archives import _fileformat as fmt
from klepto.archives._fileindex import KeyIndex, Table, cascade, record_order
from klepto.archives._filetables import IndexFile
from klepto.errors import CorruptArchiveError, CorruptionError, SignatureError

__all__ = ["COMPACT_MIN", "FLUSH_AT", "FileStore"]

logger = logging.getLogger("klepto.archives.file")

FLUSH_AT = 512  # recent entries that become a saved table (bounds the replay on open)
ADOPT_AT = 4 * FLUSH_AT  # a reader this far behind the saved index takes it over
COMPACT_MIN = 1024  # superseded records before automatic compaction is considered
FRAME_SIZE = 1024  # records of one batch are grouped into frames of about this size
STREAM_AT = 1 << 16  # larger records are written in pieces, never joined in memory


class FileStore:
    """Everything a ``file_archive`` does with its files (thread-safety is the caller's)."""

    def __init__(
        self,
        path: str,
        settings_blob: bytes,
        *,
        durability: str,
        strict: bool,
        compact_ratio: float | None,
    ) -> None:
        self.path = path
        self.codec: fmt.EntryCodec = None  # type: ignore[assignment]  # set by the archive
        self.compact_ratio = compact_ratio
        self.settings_blob = settings_blob  # a new file's metadata; kept by compaction
        self._where = {"path": path}
        self.main = _open_main(path, settings_blob, durability, strict)
        self.tables = IndexFile(path + ".idx")
        self.index = KeyIndex()
        self._large: set[int] = set()  # numbers of large set records not in saved tables
        self._depth = 0
        self._flush_failed_at = -1
        self._others_write = False
        self._compact_failed_at = 0
        self._commit: Callable[[bytes], int] | None = None  # made in the first turn
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def metadata(self) -> bytes | None:
        return _wrap(self.main.get_metadata, self.path)  # type: ignore[no-any-return]

    # --- catching up ----------------------------------------------------------------------
    def _load(self) -> None:
        """Build the index from scratch: saved tables (if usable) plus the records after."""
        saved = self.tables.read(self.main)
        index = self.index = KeyIndex()
        self._large = set()
        if saved is not None:
            index.reset(list(saved.tables), saved.covered, saved.live, saved.dead)
        self._replay(index.covered, self.main.committed_count)

    def sync(self) -> bool:
        """Apply what other processes committed since this object last looked (True if
        there was anything)."""
        try:
            change = self.main.poll()
        except CorruptionError as exc:
            raise _archive_error(exc, self.path, "the latest commits") from exc
        if change is None:
            return False
        self._apply(change)
        if len(self.index.recent) >= ADOPT_AT:
            self._adopt()
        return True

    def get(self, key: Any) -> Any:
        """The value of ``key`` as of now (``KeyError`` if absent): the read path, flat."""
        self.sync()
        digest = _blake2b(stable_bytes(key), digest_size=fmt.DIGEST_SIZE).digest()  # digest_of
        found = self.index.locate(digest)
        if found is None:
            raise KeyError(key)
        number, offset = found
        main = self.main
        try:
            # One checked read of the record's frame; a large value is loaded straight
            # from the file (klepto._recordbody), so both stay inside this try.
            if not offset and number in self._large:  # a recent large value: streamed too
                offset = self._frame_of(number)
            if offset:
                read = read_span(main, number, offset, stream=True)
                if type(read) is tuple:  # a sealed record: its value straight from the read
                    data, start, end = read
                    value = self.codec.value_in(data, start, end, digest)
                    if value is not fmt.UNUSUAL:
                        return value
                    where = {"path": self.path, "offset": offset, "key": key}
                    return self.codec.value(data[start:end], digest, where)
                record = read
            else:  # a recent small entry goes through the record file's frame cache
                record = main[number]
            return self.codec.fast_value(record, digest, self.path, offset, key)
        except CorruptionError as exc:
            if isinstance(exc, CorruptArchiveError):
                raise
            raise _archive_error(exc, self.path, f"record {number}", key) from exc

    def _apply(self, change: Change) -> None:
        if change.replaced:
            self._load()
        else:
            self._replay(change.start, change.count, change.records)

    def _replay(self, start: int, stop: int, records: list[bytes] | None = None) -> None:
        index = self.index
        where = self._where
        number = start
        try:
            for record in self.main.scan(start, stop) if records is None else records:
                kind, digest = fmt.kind_and_digest(record, where)
                if kind == fmt.DELETE:
                    index.note_delete(digest, number)  # type: ignore[arg-type]
                elif kind == fmt.CLEAR:
                    index.note_clear(number)
                else:
                    index.note_set(digest, number, kind == fmt.REPLACE)  # type: ignore[arg-type]
                    if len(record) >= STREAM_MIN:
                        self._large.add(number)
                number += 1
        except CorruptionError as exc:
            raise _archive_error(exc, self.path, f"record {number}") from exc

    def _adopt(self) -> None:
        saved = self.tables.read(self.main)
        if saved is not None and saved.covered > self.index.covered:
            self.index.adopt(list(saved.tables), saved.covered)
            self._large = {n for n in self._large if n >= saved.covered}

    # --- reading --------------------------------------------------------------------------
    def locate(self, key: Any) -> tuple[bytes, tuple[int, int] | None]:
        digest = fmt.digest_of(key)
        return digest, self.index.locate(digest)

    def record(self, found: tuple[int, int], key: Any = None) -> bytes:
        number, offset = found
        try:
            if offset:
                return self.main.record_in_frame(number, offset)  # type: ignore[return-value]
            return self.main[number]  # type: ignore[no-any-return]
        except CorruptionError as exc:
            raise _archive_error(exc, self.path, f"record {number}", key) from exc

    def value(self, digest: bytes, found: tuple[int, int], key: Any) -> Any:
        where = {"path": self.path, "offset": found[1] or None, "key": key}
        return self.codec.value(self.record(found, key), digest, where)

    def entries(self) -> list[tuple[int, int]]:
        """``(record number, frame offset)`` of every live entry, in write order."""
        merged = self.index.merged(self._frames_of)
        rec, off = merged.rec, merged.off
        return [(rec[i], off[i]) for i in record_order(merged)]

    def key_of(self, found: tuple[int, int]) -> Any:
        return self.codec.key(self.record(found), {"path": self.path, "offset": found[1] or None})

    def item_of(self, found: tuple[int, int]) -> tuple[Any, Any]:
        return self.codec.item(self.record(found), {"path": self.path, "offset": found[1] or None})

    def _frame_of(self, number: int) -> int:
        return frame_offset(self.main, number) if number < self.main.committed_count else 0

    def _frames_of(self, numbers: list[int]) -> list[int]:
        return frame_offsets(self.main, numbers)

    # --- writing --------------------------------------------------------------------------
    def writing(self) -> _Turn:
        """A turn on the file: caught up on entry, committed (or undone) on exit."""
        return _Turn(self)

    def put(self, parts: list[bytes | memoryview], digest: bytes) -> None:
        """Write one set record (given as parts) in a turn of its own: :meth:`writing` plus
        :meth:`append` for the hot path of a direct write. One record commits whole or not
        at all, so the index is changed only once it has, with no undo journal."""
        if self._depth or sum(map(len, parts)) >= STREAM_AT:
            with self.writing():
                self.append(parts, digest)
            return
        self._take_turn()
        main, index = self.main, self.index
        try:
            marked, replaces = self._marked(parts, digest)
            committed = main.committed_count
            commit = self._commit
            if commit is None:  # the record file's commit_record without its lock (ours
                commit = self._commit = main.committer()  # serializes this object)
            try:
                number = commit(b"".join(marked))
            except BaseException:
                if not main.closed and main.committed_count > committed:
                    index.note_set(digest, committed, replaces)  # it reached the file: keep it
                raise
            index.note_set(digest, number, replaces)
            self._after_commit()
        finally:
            self._depth = 0
            main.finish_turn()

    def _take_turn(self) -> None:
        """Become the file's writer, caught up with the other processes (every turn's start)."""
        # Catch up before taking the lock (the turn then has less to read), but only while
        # other processes are writing: alone, the turn's own check is enough.
        polled = self._others_write and self.sync()
        main = self.main
        try:
            change = main.start_turn()
        except (CorruptArchiveError, SignatureError):
            raise
        except CorruptionError as exc:
            raise _archive_error(exc, self.path, "the latest commits") from exc
        self._others_write = polled or change is not None
        try:
            if change is not None:
                self._apply(change)
        except BaseException:
            main.finish_turn()
            raise
        self._depth = 1

    def append(self, record: bytes | list[bytes | memoryview], digest: bytes | None) -> None:
        """Append a record (inside :meth:`writing`) and apply it to the index.

        A set record (given as parts) is marked as adding or replacing a key here, under
        the lock, where this object is up to date; a large one is streamed to the file.
        """
        index, main = self.index, self.main
        if isinstance(record, bytes):
            number = main.append(record)
            if record[0] == fmt.DELETE:
                index.note_delete(digest, number)  # type: ignore[arg-type]
            else:
                index.note_clear(number)
            return
        parts, replaces = self._marked(record, digest)  # type: ignore[arg-type]
        size = sum(map(len, parts)) - len(parts[0])
        number = main.append_stream(parts) if size >= STREAM_AT else main.append(b"".join(parts))
        index.note_set(digest, number, replaces)  # type: ignore[arg-type]
        if size >= STREAM_MIN:
            self._large.add(number)

    def _marked(
        self, parts: list[bytes | memoryview], digest: bytes
    ) -> tuple[list[bytes | memoryview], bool]:
        """A set record's ``parts`` with its head marked as adding or replacing the key
        (decided here, under the lock, where this object is up to date); and which."""
        replaces = self.index.locate(digest) is not None
        return [fmt.marked(bytes(parts[0]), replaces), *parts[1:]], replaces

    def _after_commit(self) -> None:
        index = self.index
        if index.dead >= COMPACT_MIN and self._wants_compaction():
            try:
                self.compact()
            except (OSError, CorruptionError) as exc:
                # The write itself is committed; a later one will try again.
                self._compact_failed_at = index.dead + COMPACT_MIN
                logger.warning("%s: automatic compaction failed (%s)", self.path, _text(exc))
        elif len(index.recent) >= FLUSH_AT and self.main.committed_count >= self._flush_failed_at:
            self.flush()

    def _wants_compaction(self) -> bool:
        ratio, index = self.compact_ratio, self.index
        return (
            ratio is not None
            and index.dead >= max(COMPACT_MIN, self._compact_failed_at)
            and index.dead > ratio * index.live
        )

    def flush(self) -> None:
        """Save the recent entries as a table (inside a turn). Failures only log: the
        archive is intact without it (opening it will just read more of the file)."""
        self._adopt()
        index = self.index
        if not index.recent:
            return
        tables = cascade(index.tables, index.recent_table(self._frames_of))
        point = commit_point_of(self.main)
        try:
            self.tables.save(tables, point, index.live, index.dead)
        except (OSError, CorruptionError) as exc:
            self._flush_failed_at = point.count + FLUSH_AT
            logger.warning("%s: could not save the index (%s); will retry", self.path, _text(exc))
            return
        index.adopt(tables, point.count)

    def compact(self) -> None:
        """Rewrite the file with only the live entries (inside a turn)."""
        merged = self.index.merged(self._frames_of)
        order = list(record_order(merged))
        with self.main.rewrite() as fresh:
            for i in order:  # every key is new to the new file
                fresh.append(fmt.marked(self.record((merged.rec[i], merged.off[i])), False))
            fresh.set_metadata(self.settings_blob)
            fresh.commit()
            table = _renumbered(merged, order, fresh)
            point = commit_point_of(fresh)
            self._save_new_index(table, point)
        index = self.index = KeyIndex()
        index.reset([table], point.count, point.count, 0)
        self._compact_failed_at = 0
        logger.info("%s: compacted to %d live entries", self.path, point.count)

    def _save_new_index(self, table: Table, point: Any) -> None:
        try:
            self.tables.replace([table], point, point.count, 0)
        except (OSError, CorruptionError) as exc:
            logger.warning("%s: could not save the compacted index (%s)", self.path, _text(exc))

    # --- lifecycle ------------------------------------------------------------------------
    def drop(self) -> None:
        """Delete the archive's files (the lock file last, while holding it)."""
        with self.main.turn():
            self.tables.remove()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.main.remove_lock_file()
        self.close()

    def copy_to(self, target: str) -> None:
        """Publish a copy of the archive file (and its index) at ``target``, atomically: made
        in a turn on this file, moved over the target holding only the target's lock (so
        its writer's turn ends first; opposite copies cannot deadlock), its readers told."""
        staged: list[tuple[str, str]] = []
        try:
            with self.writing():
                mode = os.stat(self.path).st_mode & 0o777
                for source, dest in ((self.tables.path, target + ".idx"), (self.path, target)):
                    if os.path.exists(source):
                        staged.append((staged_copy(source, dest, mode), dest))
            with exclusive(target):
                for temp, dest in staged:
                    os.replace(temp, dest)
                retract_note(target + ".lock")
        finally:
            for temp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)  # only if it was not moved into place

    def close(self) -> None:
        try:
            self.tables.close()
        finally:
            main = getattr(self, "main", None)
            if main is not None:
                main.close()


def _open_main(path: str, metadata: bytes, durability: str, strict: bool) -> SharedRecordFile:
    try:
        return SharedRecordFile(
            path,
            durability=durability,
            metadata=metadata,
            strict=strict,
            frame_size=FRAME_SIZE,
            sealed_commits=True,
        )
    except InvalidRecordFile as exc:
        reason = (
            f"{exc.reason}: not a klepto file_archive (files written by classic klepto are "
            "not read; see docs/migration.rst)"
        )
        raise CorruptArchiveError(reason, path=path, offset=exc.offset) from exc
    except CorruptionError as exc:
        raise _archive_error(exc, path, "the commit pointers") from exc


def _renumbered(merged: Table, order: list[int], fresh: Any) -> Table:
    """``merged``'s entries pointing at their copies in ``fresh`` (record ``k`` = ``order[k]``)."""
    offsets = frame_offsets(fresh, list(range(len(order))))
    entries = [(_digest(merged, i), k, offsets[k]) for k, i in enumerate(order)]
    return Table.from_entries(entries)


def _digest(table: Table, i: int) -> bytes:
    return table.hi[i].to_bytes(8, "big") + table.lo[i].to_bytes(8, "big")  # type: ignore[no-any-return]


def _archive_error(exc: CorruptionError, path: str, what: str, key: Any = None) -> CorruptionError:
    if isinstance(exc, (CorruptArchiveError, SignatureError)):
        return exc
    reason = f"{exc.reason} (reading {what})"
    key = exc.key if key is None else key
    return CorruptArchiveError(reason, path=exc.path or path, offset=exc.offset, key=key)


def _wrap(call: Any, path: str) -> Any:
    """``call()``, with record-file damage reported as :class:`CorruptArchiveError`."""
    try:
        return call()
    except (CorruptArchiveError, SignatureError):
        raise
    except CorruptionError as exc:
        raise CorruptArchiveError(exc.reason, path=exc.path or path, offset=exc.offset) from exc


class _Turn:
    """``FileStore.writing()``: one turn on the file, or a part of an enclosing one."""

    __slots__ = ("committed", "store")

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.committed = 0

    def __enter__(self) -> None:
        store = self.store
        if store._depth:
            store._depth += 1
            return
        store._take_turn()
        store.index.begin()
        self.committed = store.main.committed_count

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        store = self.store
        store._depth -= 1
        if store._depth:
            return
        main = store.main
        try:
            if kind is None:
                self._commit()
            else:
                self._abandon()
        finally:
            main.finish_turn()

    def _commit(self) -> None:
        store = self.store
        try:
            store.main.commit()
        except BaseException:
            self._abandon()
            raise
        store.index.commit()
        store._after_commit()

    def _abandon(self) -> None:
        store, main = self.store, self.store.main
        if main.closed or main.committed_count == self.committed:
            store.index.rollback()
        else:  # the commit reached the file before the error (a failed fsync): keep it
            store.index.commit()


def _text(exc: BaseException) -> str:
    """An exception as text for a log record (a record holding the exception itself would
    keep its traceback, and the files its frames hold open, alive in log handlers)."""
    return f"{type(exc).__name__}: {exc}"
