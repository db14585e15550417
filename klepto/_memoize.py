"""The one memoizer behind all twelve decorators: the state and algorithm of a memoized function.

Per call (classic klepto's algorithm, section 6.3 of the API spec)::

    key = plan(args, kwds)                      # rounding, binding, ignoring: decided once
    hit:  result = cache[key]                   # HIT  + policy.touch
    else: cache.load(key) if an archive is attached; found -> LOAD
    else: result = function(*args, **kwds)      # MISS (the original, unrounded arguments)
    after a LOAD or MISS, past maxsize: purge to the archive, or evict the policy's victims
          (dumping each to the archive first)

The wrappers that run it (:mod:`klepto._wrappers`) specialise the hit path at decoration
time; the user function always runs outside the memo's lock, and so does archive I/O of
``load``. On top of the classic algorithm, each optional and free when unused:

* ``ttl``: entries live ``ttl`` seconds of ``timer``; an expired entry is a miss;
* stampede protection (:mod:`klepto._stampede`): concurrent callers of a missing key compute
  it once (threads; processes through the archive's ``lock(key)``);
* ``version`` (:mod:`klepto._versioning`): a version in every key;
* ``getsizeof`` (:mod:`klepto._memo_size`): ``maxsize`` bounds the total size;
* per-call DEBUG logging (:mod:`klepto._memolog`), decided at decoration time.
"""

from __future__ import annotations

import _thread
import functools
import logging
import operator
import time
from collections.abc import Callable, Hashable
from typing import Any

from klepto._canonical import freeze, freeze_items
from klepto._memokeys import name_of, unfreezable
from klepto._policies import Policy
from klepto._stampede import MISSING, NOBODY, Flights, check_mode, shared_lock
from klepto._versioning import resolve_version, versioned_plan
from klepto.archives.memory import null_archive
from klepto.tools import CacheInfo

__all__ = ["HIT", "LOAD", "MISS", "Memo"]


class MemoLock(_thread.RLock):  # type: ignore[misc]  # subclassable at run time
    """The memo's lock: a C lock (no Python frame per acquire) that pickles as a new lock.

    Wrappers keep its bound ``acquire``/``release`` in their closures; a plain
    ``threading.Lock`` would make a memoized function unpicklable by cloudpickle (dask sends
    functions defined in ``__main__`` or a notebook by value). Re-entrant, which the
    memoizer never relies on.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[type[MemoLock], tuple[()]]:
        return (type(self), ())

    def locked(self) -> bool:
        """Whether some thread holds the lock (as ``threading.Lock.locked``)."""
        if self._is_owned():  # type: ignore[attr-defined]  # C RLock's, used by Condition
            return True
        if self.acquire(blocking=False):
            self.release()
            return False
        return True


HIT, MISS, LOAD = 0, 1, 2
_MISSING = MISSING
_NULL_ARCHIVE = null_archive
_is_not = operator.is_not


def _cache_front() -> type:
    from klepto.archives import cache

    return cache


def _get(mapping: Any, key: Hashable, default: Any = _MISSING) -> Any:
    """``mapping[key]``, or ``default`` (for mappings without a ``get`` method)."""
    try:
        return mapping[key]
    except KeyError:
        return default


class Memo:
    """The state of one memoized function: cache, policy, key plan, lock and counters."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        cache: Any,
        policy: Policy,
        keymap: Any,
        ignore: tuple[Any, ...],
        rounder: Callable[..., Any] | None,
        maxsize: int | None,
        purge: bool,
        safe: bool,
        ttl: float | None = None,
        timer: Callable[[], float] | None = None,
        stampede: bool | str = True,
        version: Any = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.func = func
        self.cache = cache
        self.policy = policy
        self.keymap = keymap
        self.ignore = ignore
        self.maxsize = maxsize
        self.purge = purge
        self.safe = safe
        self.version = resolve_version(func, version)
        plan = keymap.plan(func, ignore, rounder)
        self.plan = plan if self.version is None else versioned_plan(plan, self.version)
        self.freezes = bool(getattr(keymap, "freezes", False))
        self.stats = [0, 0, 0]
        self.expect_unhashable = [False]
        self.lock = MemoLock()
        self._acquire, self._release = self.lock.acquire, self.lock.release
        self._insert = policy.insert
        front: Any = cache if isinstance(cache, _cache_front()) else None
        self._front = front
        self.ttl, self.timer = _check_ttl(ttl, cache, front), timer or time.time
        self._deadlines = front._deadlines if self.ttl is not None and front is not None else None
        # ``get`` with a sentinel: no KeyError raised and caught on every miss.
        self._lookup = _bound_get(cache, front if self._deadlines is not None else None)
        self.stampede = check_mode(stampede)
        # Stampede protection (see klepto._stampede): the key in the leader's slot, the keys
        # of other leaders, and how many callers wait for one of them.
        self.flights = None if stampede is False else Flights(self)
        self._leading: Any = NOBODY
        self._inflight = None if self.flights is None else self.flights.inflight
        self._waiters = 0
        self.locking = _locking(cache, front, self.stampede)
        self.log = log
        if self._deadlines is not None and timer is not None:
            front.timer = timer  # plain reads of the front use the memo's clock too

    # --- the algorithm --------------------------------------------------------------------
    def archived(self) -> bool:
        """Whether results can be loaded from, and dumped to, an archive behind the cache."""
        front = self._front
        if front is not None:
            # Read the backend slot directly: this runs on every miss.
            return front.__archive__.__class__ is not _NULL_ARCHIVE
        archived = getattr(self.cache, "archived", None)
        return bool(archived()) if archived is not None else False

    def resolve(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """The whole algorithm for a hashable ``key``: hit, load or miss."""
        result = self.probe(key)
        if result is not _MISSING:
            return result
        return self.miss(key, args, kwds)

    def probe(self, key: Hashable) -> Any:
        """The cached result for ``key``, counted as a hit; or ``MISSING``, counted nothing."""
        self._acquire()
        try:
            result = self._fresh(key)
            if result is not _MISSING:
                self._hit(key)
        finally:
            self._release()
        return result

    def _fresh(self, key: Hashable) -> Any:
        """The cached result for ``key``, or ``MISSING`` (absent, or past its ttl)."""
        result = self._lookup(key, _MISSING)
        deadlines = self._deadlines
        if deadlines is not None and result is not _MISSING:
            deadline = deadlines.get(key)
            if deadline is not None and deadline <= self.timer():
                return _MISSING
        return result

    def _hit(self, key: Hashable) -> None:
        self.stats[HIT] += 1
        if self.policy.tracks_hits:
            self._touch(key)
        if self.log is not None:
            self.log.debug("%s: hit %r", name_of(self.func), key)

    def served(self, key: Hashable) -> None:
        """Count a caller served another caller's result (async stampede protection)."""
        self._hit(key)

    def _touch(self, key: Hashable) -> None:
        try:
            self.policy.touch(key)
        except KeyError:  # the key entered the cache behind the policy's back (load())
            self.policy.insert(key)

    def miss(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Not in memory: load it from the archive, or call the function (once per key).

        With stampede protection the caller computes the key as its leader, or waits for
        the caller already computing it (:class:`~klepto._stampede.Flights`). The fast
        wrappers take the leader's slot in the lock turn of their failed lookup and call
        :meth:`lead` directly.
        """
        if self.flights is not None:
            return self.flights.join(key, args, kwds)
        front = self._front
        if front is not None and front.__archive__.__class__ is _NULL_ARCHIVE:
            return self._call(key, args, kwds)  # memory only (``archived()`` spelled out)
        return self._compute(key, args, kwds)

    def lead(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Compute ``key`` as the leader in the slot (``_leading``), then land it."""
        front = self._front
        try:
            # The common case, inline: memory only (``archived()`` spelled out).
            if front is not None and front.__archive__.__class__ is _NULL_ARCHIVE:
                result = self.func(*args, **kwds)
            else:
                result = self._compute(key, args, kwds)
                self.flights.land(key, slot=True)  # type: ignore[union-attr]
                return result
        except BaseException:
            self.flights.land(key, slot=True)  # type: ignore[union-attr]
            raise
        if self.log is not None:
            self.log.debug("%s: miss %r", name_of(self.func), key)
        self._store(key, result, MISS, True)  # lands the slot, whatever happens
        return result

    def _compute(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        if self.archived():
            result = self._load(key)
            if result is not _MISSING:
                return result
        if self.locking is not None:
            lock = shared_lock(self)
            if lock is not None:
                with lock(key):
                    return self._compute_locked(key, args, kwds)
        return self._call(key, args, kwds)

    def _compute_locked(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        result = self.recheck_locked(key)
        if result is not _MISSING:
            return result
        result = self._call(key, args, kwds)
        self.publish_locked(key)
        return result

    def recheck_locked(self, key: Hashable) -> Any:
        """Under the key's cross-process lock: another process may have stored it by now."""
        return self.probe(key) if self.locking == "raw" else self._load(key)

    def publish_locked(self, key: Hashable) -> None:
        """Under the key's cross-process lock: make the new result visible to the others."""
        if self.locking == "front":
            self.cache.dump(key)  # classic fronts write later (dump, eviction): write through

    def _call(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        result = self.func(*args, **kwds)
        if self.log is not None:
            self.log.debug("%s: miss %r", name_of(self.func), key)
        self._store(key, result, MISS)
        return result

    def _load(self, key: Hashable) -> Any:
        self.cache.load(key)  # archive I/O, outside the lock
        self._acquire()
        try:
            result = self._fresh(key)
            if result is not _MISSING:
                self._admit(key, LOAD)
        finally:
            self._release()
        if result is not _MISSING and self.log is not None:
            self.log.debug("%s: load %r", name_of(self.func), key)
        return result

    def _store(self, key: Hashable, result: Any, outcome: int, slot: bool = False) -> None:
        """Put a new result into the cache, count it, evict past ``maxsize``; land the key's
        flight (``slot``: the leader in the slot is storing)."""
        self._acquire()
        try:
            if self.ttl is None:
                self.cache[key] = result
            else:
                self._write_expiring(key, result)
            # _admit, inlined: this runs on every miss.
            self.stats[outcome] += 1
            self._insert(key)
            maxsize = self.maxsize
            if maxsize is not None and len(self.cache) > maxsize:
                self._evict(maxsize)
            if self._inflight:
                self._land(key)
        finally:
            if slot:  # land the leader's flight (even if storing failed): waiters look again
                self._leading = NOBODY
                if self._waiters:
                    self.flights.ready.notify_all()  # type: ignore[union-attr]
            self._release()

    def _write_expiring(self, key: Hashable, result: Any) -> None:
        front = self._front
        if front is not None:
            front._put(key, result, self.timer() + self.ttl)  # type: ignore[operator]
        else:
            self.cache.set(key, result, expire=self.ttl)

    def _admit(self, key: Hashable, outcome: int) -> None:
        """Count a LOAD or MISS of ``key`` (now in the cache) and evict past ``maxsize``."""
        self.stats[outcome] += 1
        self._insert(key)
        maxsize = self.maxsize
        if maxsize is not None and len(self.cache) > maxsize:
            self._evict(maxsize)

    def _land_slot(self) -> None:
        """Under the lock: free the leader's slot; wake the waiters (see _store)."""
        self._leading = NOBODY
        if self._waiters:
            self.flights.ready.notify_all()  # type: ignore[union-attr]

    def _land(self, key: Hashable) -> None:
        """Under the lock: end ``key``'s flight, if any; wake the waiters."""
        inflight = self._inflight
        if inflight and key in inflight:
            inflight.discard(key)
            if self._waiters:
                self.flights.ready.notify_all()  # type: ignore[union-attr]

    def _evict(self, maxsize: int) -> None:
        cache, front, log = self.cache, self._front, self.log
        # archived(), spelled out for a front: this runs on every miss of a full cache.
        if front is not None:
            archived = front.__archive__.__class__ is not _NULL_ARCHIVE
        else:
            archived = self.archived()
        if archived and self.purge:
            cache.dump()
            cache.clear()
            self.policy.clear()
            return
        victims_of = self.policy.victims
        while len(cache) > maxsize:
            for victim in victims_of(cache) or [next(iter(cache))]:
                if archived:
                    cache.dump(victim)
                cache.pop(victim, None)
                if log is not None:
                    log.debug("%s: evict %r", name_of(self.func), victim)

    # --- keys -----------------------------------------------------------------------------
    def key(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> Hashable:
        """The key a call would use (frozen when the default keymap meets unhashables)."""
        key = self.plan(args, kwds)
        try:
            hash(key)
        except TypeError:
            return self._rekey(key, args, kwds)
        return key  # type: ignore[no-any-return]

    def _rekey(self, key: Any, args: tuple[Any, ...], kwds: dict[str, Any]) -> Hashable:
        if not self.freezes:
            raise TypeError(
                f"cannot cache {name_of(self.func)}(...): its key is unhashable; "
                "use the default keymap or a hashing/string keymap"
            )
        try:
            return freeze(key)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise unfreezable(self.func, args, kwds, exc) from None

    def unhashable(self, key: Any, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """A call whose raw key is unhashable: freeze it (or explain), then resolve."""
        if not self.freezes or type(key) is not tuple:
            return self.resolve(self._rekey(key, args, kwds), args, kwds)
        try:
            frozen = tuple(freeze_items(key))
        except TypeError as exc:
            raise unfreezable(self.func, args, kwds, exc) from None
        # Freezing keeps hashable values as they are (the same objects), so whether the key
        # was unhashable is asked by identity: ``==`` is elementwise on numpy arrays, with no
        # truth value. Expect the next call to be like this one (see _wrappers.fast_wrapper).
        unhashable = bool(key) and (frozen[0] is not key[0] or any(map(_is_not, frozen, key)))
        self.expect_unhashable[0] = unhashable
        if unhashable:
            key = frozen
        # The hit, inlined: this path serves every call with list/dict/array arguments.
        self._acquire()
        try:
            result = self._lookup(key, _MISSING) if self._deadlines is None else self._fresh(key)
            if result is not _MISSING:
                self.stats[HIT] += 1
                if self.policy.tracks_hits:
                    self._touch(key)
        finally:
            self._release()
        if result is _MISSING:
            return self.miss(key, args, kwds)
        return result

    def bypass(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Safe variants: the key could not be made, so call the function uncached."""
        result = self.func(*args, **kwds)
        with self.lock:
            self.stats[MISS] += 1
        return result

    # --- the wrapper's attributes ---------------------------------------------------------
    def info(self) -> CacheInfo:
        hit, miss, load = self.stats
        return CacheInfo(hit, miss, load, self.maxsize, len(self.cache))

    def clear(self, keepstats: bool = False) -> None:
        with self.lock:
            self.cache.clear()
            self.policy.clear()
            if not keepstats:
                self.stats[:] = [0, 0, 0]

    def expire(self) -> int:
        """Remove expired results from memory and from the archive; return how many."""
        cache = self._front if self._front is not None else self.cache
        sweep = getattr(cache, "expire", None)
        if sweep is None:
            return 0
        with self.lock:
            if self._front is not None:
                return int(self._front.expire(now=self.timer()))
            return int(sweep())

    def set_archive(self, obj: Any) -> None:
        from klepto.archives import cache as cache_front

        self.cache.archive = obj.archive if isinstance(obj, cache_front) else obj

    def lookup(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        return self.cache[self.key(args, kwds)]


def _bound_get(cache: Any, front: Any) -> Callable[[Any, Any], Any]:
    """``get(key, default)`` of ``cache``; of ``front``, the dict's own (the memo checks
    deadlines itself, with its own clock)."""
    if front is not None:
        return dict.get.__get__(front)  # type: ignore[no-any-return]
    if hasattr(cache, "get"):
        return cache.get  # type: ignore[no-any-return]
    return functools.partial(_get, cache)


def _locking(cache: Any, front: Any, stampede: bool | str) -> str | None:
    """Which cross-process lock a miss may take: 'raw' (the archive that is the cache),
    'front' (the backend of a front, ``stampede='process'``) or None."""
    if stampede is False or stampede == "thread":
        return None
    if front is None:
        return "raw" if getattr(cache, "locks_processes", False) else None
    return "front" if stampede == "process" else None


def _check_ttl(ttl: float | None, cache: Any, front: Any) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a number of seconds > 0, not {ttl!r}")
    if front is None and not hasattr(cache, "set"):
        raise TypeError(f"ttl= needs a klepto cache or archive, not {type(cache).__name__}")
    return float(ttl)
