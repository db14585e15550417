"""The saved index of a ``file_archive``: ``<archive>.idx``, a record file of index tables.

Each record is one :class:`~klepto.archives._fileindex.Table`; the metadata says which
tables make up the index and which commit of the archive file they describe::

    {"kind": "file-index", "format": 1, "tables": [record numbers, oldest first],
     "main": [file_id, seq, commit offset, record count, commit time], "covered": count,
     "live": keys, "dead": superseded records, "garbage": bytes of unlisted tables}

The file only makes opening fast; it is never needed for correctness. It is used only if
the archive file still holds the commit it names (so a stale, foreign or damaged index is
ignored, with a warning, and the archive file is read instead) and it is written only by
the process whose turn it is on the archive file. Tables are appended as they are made;
when unlisted tables take more room than listed ones the file is rewritten atomically.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from klepto._recordshare import CommitPoint, SharedRecordFile
from klepto.archives._fileindex import Table
from klepto.errors import CorruptionError

__all__ = ["IndexFile", "Saved"]

logger = logging.getLogger("klepto.archives.file")

KIND = "file-index"
FORMAT = 1
_MIN_GARBAGE = 1 << 20  # rewrite only past this many bytes of unlisted tables
_UNUSABLE = (CorruptionError, ValueError, KeyError, TypeError)


@dataclass
class Saved:
    """An index as saved: its tables and what it describes."""

    tables: list[Table]
    covered: int
    live: int
    dead: int
    point: CommitPoint


class IndexFile:
    """Reads and writes the tables of one archive (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: SharedRecordFile | None = None
        self._tables: dict[int, Table] = {}  # record number -> loaded table
        self._numbers: dict[int, int] = {}  # id(table) -> record number, for listed tables
        self._saved: Saved | None = None
        self._meta: dict[str, Any] = {}

    # --- reading ----------------------------------------------------------------------------
    def read(self, main: SharedRecordFile) -> Saved | None:
        """The saved index if it describes a commit ``main`` holds, else ``None``."""
        try:
            return self._read(main)
        except FileNotFoundError:
            self._forget()
            return None
        except (*_UNUSABLE, OSError) as exc:
            logger.warning(
                "%s: ignoring the saved index (%s); reading the archive file", self.path, _text(exc)
            )
            self._forget()
            return None

    def _read(self, main: SharedRecordFile) -> Saved | None:
        records = self._open(create=False)
        change = records.poll()
        if change is not None and change.replaced:
            self._tables.clear()
        if self._saved is None or change is not None:
            self._saved = self._load(records)
        saved = self._saved
        if saved is None or not main.holds(saved.point):
            return None
        return saved

    def _load(self, records: SharedRecordFile) -> Saved | None:
        meta = json.loads(records.get_metadata() or b"null")
        if meta is None:
            return None
        if meta.get("kind") != KIND or meta.get("format") != FORMAT:
            raise ValueError(f"not a file_archive index of format {FORMAT}")
        numbers = [int(n) for n in meta["tables"]]
        tables = [self._table(records, n) for n in numbers]
        self._tables = dict(zip(numbers, tables))
        self._numbers = {id(t): n for n, t in zip(numbers, tables)}
        self._meta = meta
        point = CommitPoint(*meta["main"])
        return Saved(tables, int(meta["covered"]), int(meta["live"]), int(meta["dead"]), point)

    def _table(self, records: SharedRecordFile, number: int) -> Table:
        table = self._tables.get(number)
        if table is None:  # one read, no copies but the arrays' own
            table = Table.decode(records.record_in_frame(number, records.frame_of(number)))
        return table

    def _open(self, *, create: bool) -> SharedRecordFile:
        if self._file is None or self._file.closed:
            self._file = SharedRecordFile(self.path, create=create, lock=False, metadata=None)
        return self._file

    def _forget(self) -> None:
        self.close()
        self._tables.clear()
        self._numbers.clear()
        self._saved = None
        self._meta = {}

    # --- writing (only during a turn on the archive file) ---------------------------------
    def save(self, tables: list[Table], point: CommitPoint, live: int, dead: int) -> None:
        """Record ``tables`` as the index as of ``point`` (appending only the new tables)."""
        records = self._writable()
        listed = {id(t) for t in tables}
        garbage = int(self._meta.get("garbage", 0)) + sum(
            _size(self._tables[n]) for i, n in self._numbers.items() if i not in listed
        )
        if garbage > max(_MIN_GARBAGE, 2 * sum(map(_size, tables))):
            self.replace(tables, point, live, dead)
            return
        with records.turn():
            numbers = [self._numbers.get(id(t)) for t in tables]
            numbers = [
                records.append(t.encode()) if n is None else n for t, n in zip(tables, numbers)
            ]
            meta = _metadata(numbers, point, live, dead, garbage)  # type: ignore[arg-type]
            records.set_metadata(json.dumps(meta).encode())
            records.commit()
        self._remember(tables, numbers, point, live, dead, meta)  # type: ignore[arg-type]

    def replace(self, tables: list[Table], point: CommitPoint, live: int, dead: int) -> None:
        """Write a new index file holding just ``tables`` and publish it atomically."""
        records = self._writable()
        with records.turn(), records.rewrite() as fresh:
            numbers = [fresh.append(t.encode()) for t in tables]
            meta = _metadata(numbers, point, live, dead, 0)
            fresh.set_metadata(json.dumps(meta).encode())
        self._remember(tables, numbers, point, live, dead, meta)

    def _remember(
        self,
        tables: list[Table],
        numbers: list[int],
        point: Any,
        live: int,
        dead: int,
        meta: dict[Any, Any],
    ) -> None:
        self._tables = dict(zip(numbers, tables))
        self._numbers = {id(t): n for n, t in zip(numbers, tables)}
        self._meta = meta
        covered = point.count
        self._saved = Saved(list(tables), covered, live, dead, point)

    def _writable(self) -> SharedRecordFile:
        """The index file open for turns; a damaged or foreign one is replaced by a new one."""
        try:
            records = self._open(create=True)
            if records.read_only:
                raise PermissionError(errno.EACCES, "read-only index file", self.path)
            return records
        except (*_UNUSABLE, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.ELOOP, None):
                raise
            logger.warning("%s: replacing an unusable index file (%s)", self.path, _text(exc))
        self._forget()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a planted symlink is removed, never followed
        return self._open(create=True)

    def remove(self) -> None:
        self._forget()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        records, self._file = self._file, None
        if records is not None:
            records.close()


def _size(table: Table) -> int:
    return 32 * len(table) + 12


def _metadata(
    numbers: list[int], point: CommitPoint, live: int, dead: int, garbage: int
) -> dict[Any, Any]:
    return {
        "kind": KIND,
        "format": FORMAT,
        "tables": numbers,
        "main": list(point),
        "covered": point.count,
        "live": live,
        "dead": dead,
        "garbage": garbage,
    }


def _text(exc: BaseException) -> str:
    """An exception as text for a log record (a record holding the exception itself would
    keep its traceback, and the files its frames hold open, alive in log handlers)."""
    return f"{type(exc).__name__}: {exc}"
