"""Eviction policies: one small class per rule, behind one protocol.

A policy only does bookkeeping on keys; it never touches the cache or an archive. The
memoizer calls, under its own lock:

* ``touch(key)`` on a hit,
* ``insert(key)`` after a load or a miss put ``key`` into the cache (an existing key is
  treated as a touch),
* ``victims(keys)`` when the cache holds more than ``maxsize`` entries: the keys to evict now
  (``keys`` is the cache, for policies that choose among its current keys); the policy
  forgets them. Keys that entered the cache behind the policy's back (a seeded cache, a bulk
  ``load()``) are adopted first as the least recently and least often used, and keys that
  left it are forgotten, so that new results are not the only ones ever evicted,
* ``remove(key)`` when a key leaves the cache by other means, and ``clear()``.

The rules and their exact orderings follow classic klepto (see docs/migration.rst), so that
hit/miss/load counters match it call for call.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Sequence
from itertools import islice
from typing import Any

__all__ = [
    "LFUPolicy",
    "LRUPolicy",
    "MRUPolicy",
    "NoPolicy",
    "Policy",
    "RRPolicy",
    "UnboundedPolicy",
    "get_policy",
    "register_policy",
]


class Policy:
    """Base class: no bookkeeping, no victims (an unbounded cache)."""

    name = "inf"
    #: ``touch`` is skipped entirely on the hit path when a policy does not need it.
    tracks_hits = False

    def __init__(self, maxsize: int | None = None) -> None:
        self.maxsize = maxsize

    def touch(self, key: Hashable) -> None:
        """Record a hit on ``key``."""

    def insert(self, key: Hashable) -> None:
        """Record that ``key`` entered the cache (or was stored again)."""

    def remove(self, key: Hashable) -> None:
        """Forget ``key``, which left the cache."""

    def victims(self, keys: Collection[Hashable]) -> list[Hashable]:
        """Keys to evict now because the cache is over ``maxsize``."""
        return []

    def clear(self) -> None:
        """Forget every key."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(maxsize={self.maxsize!r})"


class UnboundedPolicy(Policy):
    """``inf_cache``: never evicts."""


class NoPolicy(Policy):
    """``no_cache``: nothing is kept in memory, so there is nothing to track."""

    name = "no"


def _adopt(order: OrderedDict[Any, Any], keys: Collection[Hashable]) -> None:
    """Make ``order`` track exactly ``keys``: forget stale keys, put untracked ones first.

    Runs only when the counts differ, i.e. after the cache changed behind the policy's back.
    """
    keys = list(keys)  # one C-level copy: another function sharing the cache may write to it
    current = set(keys)
    for key in [key for key in order if key not in current]:
        del order[key]
    for key in reversed([key for key in keys if key not in order]):
        order[key] = None
        order.move_to_end(key, last=False)


class LRUPolicy(Policy):
    """Least recently used: the key whose last hit, load or miss is oldest goes first."""

    name = "lru"
    tracks_hits = True

    def __init__(self, maxsize: int | None = None) -> None:
        super().__init__(maxsize)
        self._order: OrderedDict[Hashable, None] = OrderedDict()
        # Bound once: the hit path calls it directly (a C method, no Python frame).
        self.touch = self._order.move_to_end  # type: ignore[method-assign]

    def insert(self, key: Hashable) -> None:
        order = self._order
        if key in order:
            order.move_to_end(key)
        else:
            order[key] = None

    def remove(self, key: Hashable) -> None:
        self._order.pop(key, None)

    def victims(self, keys: Collection[Hashable]) -> list[Hashable]:
        if len(self._order) != len(keys):
            _adopt(self._order, keys)
        if not self._order:
            return []
        return [self._order.popitem(last=False)[0]]

    def clear(self) -> None:
        self._order.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {"maxsize": self.maxsize, "order": list(self._order)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["maxsize"])  # type: ignore[misc]
        self._order.update(dict.fromkeys(state["order"]))


class MRUPolicy(Policy):
    """Most recently used: evicts the key used last *before* the one that overflowed."""

    name = "mru"
    tracks_hits = True

    def __init__(self, maxsize: int | None = None) -> None:
        super().__init__(maxsize)
        self._order: OrderedDict[Hashable, None] = OrderedDict()
        self.touch = self._order.move_to_end  # type: ignore[method-assign]

    insert = LRUPolicy.insert

    def remove(self, key: Hashable) -> None:
        self._order.pop(key, None)

    def victims(self, keys: Collection[Hashable]) -> list[Hashable]:
        order = self._order
        if len(order) != len(keys):
            _adopt(order, keys)
        if len(order) < 2:
            return []
        newest = order.popitem(last=True)[0]
        victim = order.popitem(last=True)[0]
        order[newest] = None
        return [victim]

    def clear(self) -> None:
        self._order.clear()

    __getstate__ = LRUPolicy.__getstate__
    __setstate__ = LRUPolicy.__setstate__


class LFUPolicy(Policy):
    """Least frequently used, evicting ``max(2, maxsize // 10)`` keys per overflow.

    Ties go to the key counted first; the key that just overflowed the cache (count 1) may
    itself be evicted.
    """

    name = "lfu"
    tracks_hits = True

    def __init__(self, maxsize: int | None = None) -> None:
        super().__init__(maxsize)
        self._counts: dict[Hashable, int] = {}

    def touch(self, key: Hashable) -> None:
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    insert = touch

    def remove(self, key: Hashable) -> None:
        self._counts.pop(key, None)

    def victims(self, keys: Collection[Hashable]) -> list[Hashable]:
        if len(self._counts) != len(keys):
            self._adopt(keys)
        counts = self._counts
        batch = max(2, (self.maxsize or 0) // 10)
        # Usually a whole batch shares the lowest count (most keys were used once): then
        # the first ``batch`` of them in counting order are exactly what a stable sort by
        # count would choose, found without sorting or calling a key function per key.
        low = min(counts.values(), default=0)
        chosen = list(islice((key for key, count in counts.items() if count == low), batch))
        if len(chosen) < batch:
            chosen = heapq.nsmallest(batch, counts, key=counts.__getitem__)
        for key in chosen:
            del counts[key]
        return chosen

    def _adopt(self, keys: Collection[Hashable]) -> None:
        """Forget stale keys; keys loaded behind the policy's back count 0 and come first."""
        keys = list(keys)  # a copy, as in _adopt
        current = set(keys)
        adopted = {key: 0 for key in keys if key not in self._counts}
        kept = {key: count for key, count in self._counts.items() if key in current}
        self._counts = {**adopted, **kept}

    def clear(self) -> None:
        self._counts.clear()


def _global_randbelow() -> Callable[[int], int]:
    """What ``random.choice`` draws with: the global generator's ``_randbelow`` (CPython), or
    an equivalent through ``random.choice`` itself where that is not there."""
    randbelow = getattr(getattr(random, "_inst", None), "_randbelow", None)
    if callable(randbelow):
        return randbelow  # type: ignore[no-any-return]
    return lambda n: random.choice(range(n))


_randbelow = _global_randbelow()


class RRPolicy(Policy):
    """Random replacement: one key drawn from the whole cache per overflow.

    ``choice`` defaults to the global ``random.choice``: one draw per overflow over as many
    keys as the cache holds, which consumes the global random stream exactly as classic
    klepto does. Keys are kept in a list with an index (swap-remove), so a draw is O(1)
    instead of copying every key. Inject a seeded ``choice`` for reproducible tests.
    """

    name = "rr"

    def __init__(
        self, maxsize: int | None = None, choice: Callable[[Sequence[Any]], Any] | None = None
    ) -> None:
        super().__init__(maxsize)
        self.choice = choice
        self._keys: list[Hashable] = []
        self._index: dict[Hashable, int] = {}

    def insert(self, key: Hashable) -> None:
        index = self._index
        if key not in index:
            index[key] = len(self._keys)
            self._keys.append(key)

    def remove(self, key: Hashable) -> None:
        position = self._index.pop(key, None)
        if position is None:
            return
        keys = self._keys
        last = keys.pop()
        if position < len(keys):
            keys[position] = last
            self._index[last] = position

    def victims(self, keys: Collection[Hashable]) -> list[Hashable]:
        own = self._keys
        if len(own) != len(keys):
            self._adopt(keys)
        if not own:
            return []
        choice = self.choice
        # random.choice(own) without its Python frame: the same draw from the same stream.
        victim = own[_randbelow(len(own))] if choice is None else choice(own)
        # remove(victim), inlined: this runs on every miss of a full cache.
        index = self._index
        position = index.pop(victim)
        last = own.pop()
        if position < len(own):
            own[position] = last
            index[last] = position
        return [victim]

    def _adopt(self, keys: Collection[Hashable]) -> None:
        """Draw over the whole cache, as classic klepto does (and as the stream expects)."""
        self._keys[:] = list(keys)  # a copy, as in _adopt
        self._index = {key: position for position, key in enumerate(self._keys)}

    def clear(self) -> None:
        self._keys.clear()
        self._index.clear()


_POLICIES: dict[str, type[Policy]] = {
    "inf": UnboundedPolicy,
    "no": NoPolicy,
    "lru": LRUPolicy,
    "mru": MRUPolicy,
    "lfu": LFUPolicy,
    "rr": RRPolicy,
}


def register_policy(name: str, policy: type[Policy], *, replace: bool = False) -> None:
    """Make a :class:`Policy` subclass available by name."""
    if name in _POLICIES and not replace:
        raise ValueError(f"a policy named {name!r} is already registered (pass replace=True)")
    _POLICIES[name] = policy


def get_policy(name: str, maxsize: int | None = None, **options: Any) -> Policy:
    """A new policy instance of the kind registered as ``name``."""
    try:
        return _POLICIES[name](maxsize, **options)
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(_POLICIES)})") from None
