"""``size_limit``: keep a persistent archive under a number of bytes, oldest writes first out.

Measuring an archive means looking at every entry (file sizes, row lengths, record sizes),
so it is not done on every write. After a measurement the archive object keeps an
*estimate*: the measured total plus what it has written since (the entry's stored size when
the backend can tell cheaply, else the average entry size). When the estimate passes the
limit the archive is measured again and, if it really is over, the least recently written
entries are deleted until it holds at most ``LOW_WATER`` of the limit: the headroom means
the next measurement is many writes away, so the cost per write stays constant.

Writers in other processes are seen at the next measurement; between measurements an
archive shared by several writers can exceed its limit by what the others wrote meanwhile.
A backend whose entries have no write time (SQL rows) reports ``None``: the entries this
archive object did not write go first (in the backend's order), then its own writes,
oldest first.
Evictions are logged at INFO (one line per pass) and DEBUG (one per entry).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["LOW_WATER", "SizeLimit", "SizedArchive"]

#: After an eviction pass, an archive holds at most this fraction of its size limit.
LOW_WATER = 0.9

logger = logging.getLogger("klepto.archives")


#: How many of its own writes an archive object remembers, for backends without write times.
RECENT_WRITES = 100_000


class SizedArchive(Protocol):
    """What an archive provides for size accounting (see :class:`~klepto.archives.Archive`)."""

    def _entry_sizes(self) -> Iterable[tuple[Any, int, Any]]: ...

    def _entry_size(self, key: Any) -> int | None: ...

    def _entry_handle(self, key: Any) -> Any: ...

    def _evict_entry(self, handle: Any) -> None: ...


class SizeLimit:
    """The byte budget of one archive object and its running estimate."""

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"size_limit must be a number of bytes >= 0, not {limit!r}")
        self.limit = limit
        self._estimate: float | None = None  # None: not measured yet
        self._average = 0.0
        self._guard = threading.Lock()
        # This object's own writes, oldest first: the write order of a backend that has none.
        self._recent: OrderedDict[Any, None] = OrderedDict()

    def wrote(self, archive: SizedArchive, key: Any, name: str) -> None:
        """Account for a write of ``key``; measure and evict when the budget may be spent."""
        with self._guard:
            recent, handle = self._recent, archive._entry_handle(key)
            recent[handle] = None
            recent.move_to_end(handle)
            if len(recent) > RECENT_WRITES:
                recent.popitem(last=False)
            if self._estimate is not None:
                size = archive._entry_size(key)
                self._estimate += self._average if size is None else size
                if self._estimate <= self.limit:
                    return
            self._enforce(archive, name)

    def _enforce(self, archive: SizedArchive, name: str) -> None:
        entries = list(archive._entry_sizes())
        if any(written is None for written, _, _ in entries):
            # No write times: entries this object did not write are older than its own.
            rank = {handle: order for order, handle in enumerate(self._recent)}
            entries = [(rank.get(handle, -1), size, handle) for _, size, handle in entries]
        entries.sort(key=_written)
        total = sum(size for _, size, _ in entries)
        self._average = total / len(entries) if entries else 0.0
        if total > self.limit:
            total = self._evict(archive, entries, total, name)
        self._estimate = total

    def _evict(
        self, archive: SizedArchive, entries: list[tuple[Any, int, Any]], total: int, name: str
    ) -> int:
        target = self.limit * LOW_WATER
        evicted = freed = 0
        for _, size, handle in entries:
            if total - freed <= target:
                break
            archive._evict_entry(handle)
            logger.debug("%s: evicted %r (%d bytes) to stay under size_limit", name, handle, size)
            evicted += 1
            freed += size
        logger.info(
            "%s: evicted %d least recently written entries (%d bytes) to stay under "
            "size_limit=%d (now %d bytes)",
            name,
            evicted,
            freed,
            self.limit,
            total - freed,
        )
        return total - freed

    def forget(self) -> None:
        """Measure again before the next decision (after ``clear()`` or an outside change)."""
        with self._guard:
            self._estimate = None


def _written(entry: tuple[Any, int, Any]) -> Any:
    return entry[0]
