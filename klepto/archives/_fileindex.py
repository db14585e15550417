"""The key index of a ``file_archive``: digest -> the record holding the key's value.

Two parts, so that opening a large archive neither replays its file nor builds a big dict:

* **tables**, oldest first: immutable arrays sorted by digest (``hi``, ``lo``: the digest's
  two big-endian halves; ``rec``: the record number, with :data:`TOMB` set for a
  deletion; ``off``: the file offset of the record's frame). They describe the records
  before ``covered`` and are saved in the archive's index file, from which they are loaded
  with a few memory copies. A newer table overrides an older one. 32 bytes per entry,
  plus, for tables of up to ``SEARCH_LIST_MAX`` entries, their ``hi`` column as a list
  (about 40 bytes an entry) once they are searched: bisecting a list is faster.
* **recent**: a dict ``digest -> record number`` (``TOMB`` set for a deletion) for the
  records from ``covered`` on: what was written since the tables were saved.

When ``recent`` grows past a threshold it becomes a new table; a new table is merged into
the one before while it is at least 1/RATIO of its size, which keeps a handful of tables
(about log_RATIO of the entries over the threshold). Merging inserts the smaller table into
the larger with bisection and slice copies, so the per-entry Python work is the smaller
table's.

``live`` and ``dead`` count live keys and superseded records (the garbage that compaction
reclaims). Writes made in a turn are journaled so that an aborted commit can be undone.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["RATIO", "SEARCH_LIST_MAX", "TOMB", "KeyIndex", "Table"]

TOMB = 1 << 63
RATIO = 4
SEARCH_LIST_MAX = 1 << 16  # tables up to this size are searched in a list (see Table.keys)
_HALVES = struct.Struct(">QQ")
_TABLE_HEAD = struct.Struct("<4sQ")
_TABLE_MAGIC = b"KFX1"
_ABSENT = object()
_BIG_ENDIAN = sys.byteorder != "little"


def halves(digest: bytes) -> tuple[int, int]:
    return _HALVES.unpack(digest)


class Table:
    """An immutable run of index entries sorted by digest (see the module docstring)."""

    __slots__ = ("hi", "lo", "off", "rec", "search")

    def __init__(self, hi: array[Any], lo: array[Any], rec: array[Any], off: array) -> None:  # type: ignore[type-arg]
        self.hi, self.lo, self.rec, self.off = hi, lo, rec, off
        self.search: list[int] | array[Any] | None = None  # made by searchable()

    def searchable(self) -> list[int] | array[Any]:
        """``hi`` for bisection on the lookup path (kept in ``search``): a list up to
        ``SEARCH_LIST_MAX`` entries, as bisecting an array makes an int object per probe
        (a lookup in 10k entries: 1.8 -> 1.1 us); larger tables stay arrays (8 bytes an
        entry, not 40). Made on the first lookup: the table is complete by then."""
        his = self.hi
        search = self.search = his.tolist() if len(his) <= SEARCH_LIST_MAX else his
        return search

    @classmethod
    def empty(cls) -> Table:
        return cls(array("Q"), array("Q"), array("Q"), array("Q"))

    @classmethod
    def from_entries(cls, entries: list[tuple[bytes, int, int]]) -> Table:
        """A table of ``(digest, rec, off)`` entries (digests distinct, any order)."""
        entries = sorted(entries)  # bytes order is (hi, lo) order: the halves are big-endian
        return cls.from_columns(
            [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]
        )

    @classmethod
    def from_columns(cls, digests: list[bytes], recs: list[int], offs: list[int]) -> Table:
        """A table of the sorted, distinct ``digests`` and their records and offsets (built
        with a few C-level passes: a flush of 512 entries costs no per-entry Python)."""
        flat = struct.unpack(f">{2 * len(digests)}Q", b"".join(digests))
        his, los = array("Q", flat[0::2]), array("Q", flat[1::2])
        return cls(his, los, array("Q", recs), array("Q", offs))

    def __len__(self) -> int:
        return len(self.hi)

    def find(self, hi: int, lo: int) -> int:
        """Position of the digest ``(hi, lo)``, or -1."""
        his = self.hi
        i = bisect_left(his, hi)
        n = len(his)
        while i < n and his[i] == hi:
            if self.lo[i] == lo:
                return i
            i += 1
        return -1

    def position(self, hi: int, lo: int) -> int:
        """Where ``(hi, lo)`` is or would be inserted (keeping the order)."""
        his, los = self.hi, self.lo
        i = bisect_left(his, hi)
        n = len(his)
        while i < n and his[i] == hi and los[i] < lo:
            i += 1
        return i

    # --- persistence ----------------------------------------------------------------------
    def encode(self) -> bytes:
        columns = [self.hi, self.lo, self.rec, self.off]
        if _BIG_ENDIAN:  # pragma: no cover - the format is little-endian everywhere
            columns = [_swapped(column) for column in columns]
        return b"".join([_TABLE_HEAD.pack(_TABLE_MAGIC, len(self)), *map(bytes, columns)])

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Table:
        """The table in ``data``; ``ValueError`` if it is not one."""
        view = memoryview(data)
        if len(view) < _TABLE_HEAD.size:
            raise ValueError("index table truncated")
        magic, count = _TABLE_HEAD.unpack_from(view)
        if magic != _TABLE_MAGIC or len(view) != _TABLE_HEAD.size + 32 * count:
            raise ValueError("not an index table of the expected size")
        columns = []
        for i in range(4):
            start = _TABLE_HEAD.size + 8 * count * i
            column = array("Q")
            column.frombytes(view[start : start + 8 * count])
            if _BIG_ENDIAN:  # pragma: no cover
                column.byteswap()
            columns.append(column)
        return cls(*columns)


def _swapped(column: array[Any]) -> array[Any]:  # pragma: no cover - big-endian hosts only
    copy = array("Q", column)
    copy.byteswap()
    return copy


def merge(newer: Table, older: Table, *, keep_tombs: bool) -> Table:
    """``older`` with ``newer``'s entries put in (replacing equal digests)."""
    if len(newer) > len(older):  # walk the smaller one in Python; copy slices of the other
        return _merge_into(older, newer, newer_wins=False, keep_tombs=keep_tombs)
    return _merge_into(newer, older, newer_wins=True, keep_tombs=keep_tombs)


def _merge_into(small: Table, big: Table, *, newer_wins: bool, keep_tombs: bool) -> Table:
    out = Table.empty()
    hi, lo, rec, off = out.hi, out.lo, out.rec, out.off
    done = 0
    for i in range(len(small)):
        h, w = small.hi[i], small.lo[i]
        at = big.position(h, w)
        if at > done:
            hi.extend(big.hi[done:at])
            lo.extend(big.lo[done:at])
            rec.extend(big.rec[done:at])
            off.extend(big.off[done:at])
        done = at
        source, j = small, i
        if at < len(big) and big.hi[at] == h and big.lo[at] == w:
            done = at + 1
            if not newer_wins:
                source, j = big, at
        if keep_tombs or not source.rec[j] & TOMB:
            hi.append(h)
            lo.append(w)
            rec.append(source.rec[j])
            off.append(source.off[j])
    hi.extend(big.hi[done:])
    lo.extend(big.lo[done:])
    rec.extend(big.rec[done:])
    off.extend(big.off[done:])
    if not keep_tombs:
        return _without_tombs(out)
    return out


def _has_tombs(table: Table) -> bool:
    return bool(table.rec) and max(table.rec) >= TOMB  # TOMB is the top bit: one C pass


def _without_tombs(table: Table) -> Table:
    if not _has_tombs(table):
        return table
    keep = [i for i, rec in enumerate(table.rec) if not rec & TOMB]
    return Table(*(array("Q", (column[i] for i in keep)) for column in _columns(table)))


def _columns(table: Table) -> tuple[array[Any], array[Any], array[Any], array]:  # type: ignore[type-arg]
    return table.hi, table.lo, table.rec, table.off


def cascade(tables: list[Table], new: Table) -> list[Table]:
    """The table list after adding ``new``: merged into its predecessors while large."""
    result = [*tables, new]
    while len(result) >= 2 and len(result[-1]) * RATIO >= len(result[-2]):
        newer = result.pop()
        result[-1] = merge(newer, result[-1], keep_tombs=len(result) > 1)
    if len(result) == 1 and _has_tombs(result[0]):
        result[0] = _without_tombs(result[0])  # nothing older for a tombstone to hide
    return result


class KeyIndex:
    """Tables + recent + counters (see the module docstring)."""

    def __init__(self) -> None:
        self.tables: list[Table] = []
        self.covered = 0
        self.recent: dict[bytes, int] = {}
        self.live = 0
        self.dead = 0
        self._journal: list[tuple[Any, Any]] | None = None
        self._saved = (0, 0)

    def reset(self, tables: list[Table], covered: int, live: int, dead: int) -> None:
        self.tables, self.covered, self.recent = tables, covered, {}
        self.live, self.dead = live, dead

    # --- lookups --------------------------------------------------------------------------
    def locate(self, digest: bytes) -> tuple[int, int] | None:
        """``(record number, frame offset or 0)`` of the live entry for ``digest``."""
        rec = self.recent.get(digest)
        if rec is not None:
            return None if rec & TOMB else (rec, 0)
        if not self.tables:
            return None
        hi, lo = _HALVES.unpack(digest)
        for table in reversed(self.tables):
            his = table.search or table.searchable()  # Table.find(), inline (the read path)
            i = bisect_left(his, hi)
            n = len(his)
            while i < n and his[i] == hi:
                if table.lo[i] == lo:
                    rec = table.rec[i]
                    return None if rec & TOMB else (rec, table.off[i])
                i += 1
        return None

    # --- changes (records applied in file order) ------------------------------------------
    def note_set(self, digest: bytes, number: int, replaces: bool) -> None:
        """Record ``number`` sets ``digest``; ``replaces``: the key had a value before."""
        if replaces:
            self.dead += 1  # the record it supersedes
        else:
            self.live += 1
        if self._journal is not None:
            self._journal.append((digest, self.recent.get(digest, _ABSENT)))
        self.recent[digest] = number

    def note_delete(self, digest: bytes, number: int) -> None:
        """Record ``number`` deletes the live key ``digest``."""
        self.live -= 1
        self.dead += 2  # the record it supersedes, and the tombstone itself
        if self._journal is not None:
            self._journal.append((digest, self.recent.get(digest, _ABSENT)))
        self.recent[digest] = number | TOMB

    def note_clear(self, number: int) -> None:
        if self._journal is not None:
            self._journal.append((None, (self.tables, self.covered, self.recent)))
        self.dead = number + 1  # every record so far, and the clear record itself
        self.live = 0
        self.tables, self.covered, self.recent = [], self.covered, {}

    # --- undo of an aborted turn ----------------------------------------------------------
    def begin(self) -> None:
        self._journal = []
        self._saved = (self.live, self.dead)

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal, None
        if journal is None:
            return
        for digest, old in reversed(journal):
            if digest is None:
                self.tables, self.covered, self.recent = old
            elif old is _ABSENT:
                self.recent.pop(digest, None)
            else:
                self.recent[digest] = old
        self.live, self.dead = self._saved

    # --- tables ---------------------------------------------------------------------------
    def recent_table(self, frames_of: Callable[[list[int]], list[int]]) -> Table:
        """The recent entries as a table (``frames_of(numbers)`` gives their frame offsets)."""
        items = sorted(self.recent.items())
        recs = [rec for _, rec in items]
        live = [rec for rec in recs if not rec & TOMB]
        if len(live) == len(recs):
            offs = frames_of(live)
        else:  # a deletion's entry has no frame
            frames = iter(frames_of(live))
            offs = [0 if rec & TOMB else next(frames) for rec in recs]
        return Table.from_columns([digest for digest, _ in items], recs, offs)

    def adopt(self, tables: list[Table], covered: int) -> None:
        """Take ``tables`` (describing records before ``covered``) as this index's own."""
        self.tables = tables
        if covered != self.covered:
            self.recent = {d: r for d, r in self.recent.items() if r & ~TOMB >= covered}
        self.covered = covered

    def merged(self, frames_of: Callable[[list[int]], list[int]]) -> Table:
        """One table of every live entry (tombstones and superseded entries dropped)."""
        result = Table.empty()
        for table in self.tables:
            result = merge(table, result, keep_tombs=True)
        if self.recent:
            result = merge(self.recent_table(frames_of), result, keep_tombs=True)
        return _without_tombs(result)


def record_order(table: Table) -> Iterator[int]:
    """Positions of ``table``'s entries in the order of their records (write order)."""
    rec = table.rec
    return iter(sorted(range(len(table)), key=rec.__getitem__))
