"""``no_cache``'s memo: nothing kept in memory; with an archive, every result written through."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from klepto._memoize import LOAD, MISS, Memo, _get
from klepto._stampede import MISSING, shared_lock

__all__ = ["NoCacheMemo"]

_MISSING = MISSING


class NoCacheMemo(Memo):
    """``no_cache``: keeps nothing in memory; with an archive, writes every result through."""

    def resolve(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        return self.miss(key, args, kwds)

    def _fresh(self, key: Hashable) -> Any:
        return _MISSING  # nothing is kept in memory to look at again

    def served(self, key: Hashable) -> None:
        self.stats[LOAD] += 1  # no_cache never serves from memory: another caller's result

    def _compute(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        lock = shared_lock(self) if self.locking is not None else None
        if lock is None:
            return self._pass_through(key, args, kwds)
        with lock(key):
            return self._pass_through(key, args, kwds)

    def _pass_through(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        result = self.take(key)
        if result is not _MISSING:
            return result
        result = self.func(*args, **kwds)
        self.give(key, result)
        return result

    def take(self, key: Hashable) -> Any:
        """The archived result for ``key`` (counted as a load), or ``MISSING``."""
        cache = self.cache
        if self.archived():
            cache.load(key)
        with self.lock:
            result = _get(cache, key)
            if result is not _MISSING:
                self.stats[LOAD] += 1
                if hasattr(cache, "archive") and isinstance(cache, dict):
                    cache.clear()
        return result

    def give(self, key: Hashable, result: Any) -> None:
        """Count a miss and write ``result`` through to the archive (memory keeps nothing)."""
        cache = self.cache
        front = hasattr(cache, "archive") and isinstance(cache, dict)
        with self.lock:
            if self.ttl is None:
                cache[key] = result
            else:
                self._write_expiring(key, result)
            self.stats[MISS] += 1
            if front and len(cache):
                if self.archived():
                    cache.dump()
                cache.clear()

    def clear(self, keepstats: bool = False) -> None:
        if not keepstats:
            with self.lock:
                self.stats[:] = [0, 0, 0]
