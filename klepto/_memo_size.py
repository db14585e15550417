"""``getsizeof=``: ``maxsize`` bounds the total size of the results in memory, as in cachetools.

``getsizeof(result)`` is asked once per result entering memory; evictions follow the
decorator's policy until the total is at most ``maxsize`` again (each victim dumped to the
archive first, as in the classic algorithm). A result larger than ``maxsize`` on its own is
returned (and written to the archive, if there is one) but not kept in memory.
``info().size`` is the current total size.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from klepto._memoize import Memo
from klepto._memokeys import name_of
from klepto.tools import CacheInfo

__all__ = ["SizedMemo"]


class SizedMemo(Memo):
    """A :class:`~klepto._memoize.Memo` whose ``maxsize`` is a total of ``getsizeof``."""

    def __init__(
        self, func: Callable[..., Any], *, getsizeof: Callable[[Any], int], **options: Any
    ) -> None:
        super().__init__(func, **options)
        if self._front is None:
            raise TypeError("getsizeof= needs an in-memory cache (a dict or a cache front)")
        self.getsizeof = getsizeof
        self.sizes: dict[Hashable, int] = {}
        self.currsize = 0

    def _store(self, key: Hashable, result: Any, outcome: int, slot: bool = False) -> None:
        self._acquire()
        try:
            if self.ttl is None:
                self.cache[key] = result
            else:
                self._write_expiring(key, result)
            self._admit(key, outcome)
            if self._inflight:
                self._land(key)
        finally:
            if slot:
                self._land_slot()
            self._release()

    def _admit(self, key: Hashable, outcome: int) -> None:
        self.stats[outcome] += 1
        self._insert(key)
        size = self.getsizeof(dict.__getitem__(self.cache, key))
        self.currsize += size - self.sizes.get(key, 0)
        self.sizes[key] = size
        maxsize = self.maxsize
        if maxsize is not None and self.currsize > maxsize:
            self._evict(maxsize)

    def _evict(self, maxsize: int) -> None:
        cache = self.cache
        archived = self.archived()
        if archived and self.purge:
            cache.dump()
            cache.clear()
            self.policy.clear()
            self._forget_all()
            return
        self._resync()
        sizes = self.sizes
        while self.currsize > maxsize and cache:
            victims = self.policy.victims(cache) or [next(iter(cache))]
            for victim in victims:
                if archived:
                    cache.dump(victim)
                cache.pop(victim, None)
                self.currsize -= sizes.pop(victim, 0)
                if self.log is not None:
                    self.log.debug("%s: evict %r", name_of(self.func), victim)

    def _resync(self) -> None:
        """Forget sizes of keys that left memory, and size keys that entered it, behind our back."""
        cache, sizes = self.cache, self.sizes
        if len(sizes) == len(cache):
            return
        self.sizes = {
            key: sizes[key] if key in sizes else self.getsizeof(dict.__getitem__(cache, key))
            for key in list(cache)
        }
        self.currsize = sum(self.sizes.values())

    def _forget_all(self) -> None:
        self.sizes.clear()
        self.currsize = 0

    def info(self) -> CacheInfo:
        with self.lock:
            self._resync()
            hit, miss, load = self.stats
            return CacheInfo(hit, miss, load, self.maxsize, self.currsize)

    def clear(self, keepstats: bool = False) -> None:
        with self.lock:
            self._forget_all()
        super().clear(keepstats)
