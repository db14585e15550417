"""The one memoizing wrapper behind all twelve decorators.

Per call (classic klepto's algorithm, section 6.3 of the API spec)::

    key = plan(args, kwds)                      # rounding, binding, ignoring: decided once
    hit:  result = cache[key]                   # HIT  + policy.touch
    else: cache.load(key) if an archive is attached; found -> LOAD
    else: result = function(*args, **kwds)      # MISS (the original, unrounded arguments)
    after a LOAD or MISS, past maxsize: purge to the archive, or evict the policy's victims
          (dumping each to the archive first)

The hit path is a closure specialised at decoration time: with the default keymap and all
parameters passed positionally, the key is ``args`` itself and a hit costs one dict lookup
and two counter updates under the wrapper's lock. The user function always runs outside the
lock; archive I/O of ``load`` runs outside it too.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import threading
from collections.abc import Callable, Hashable
from typing import Any

from klepto._canonical import freeze, freeze_items
from klepto._policies import Policy
from klepto.archives.memory import null_archive
from klepto.tools import CacheInfo

__all__ = ["Memo", "memoize"]

HIT, MISS, LOAD = 0, 1, 2
_MISSING = object()
_UNHASHABLE = object()
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
        ignore: tuple,
        rounder: Callable | None,
        maxsize: int | None,
        purge: bool,
        safe: bool,
    ) -> None:
        self.func = func
        self.cache = cache
        self.policy = policy
        self.keymap = keymap
        self.ignore = ignore
        self.maxsize = maxsize
        self.purge = purge
        self.safe = safe
        self.plan = keymap.plan(func, ignore, rounder)
        self.freezes = bool(getattr(keymap, "freezes", False))
        self.stats = [0, 0, 0]
        self.expect_unhashable = [False]
        self.lock = threading.Lock()
        self._acquire, self._release = self.lock.acquire, self.lock.release
        self._insert = policy.insert
        self._front = cache if isinstance(cache, _cache_front()) else None
        # ``get`` with a sentinel: no KeyError raised and caught on every miss.
        self._lookup = cache.get if hasattr(cache, "get") else functools.partial(_get, cache)

    # --- the algorithm --------------------------------------------------------------------
    def archived(self) -> bool:
        """Whether results can be loaded from, and dumped to, an archive behind the cache."""
        front = self._front
        if front is not None:
            # Read the backend slot directly: this runs on every miss.
            return front.__archive__.__class__ is not _NULL_ARCHIVE
        archived = getattr(self.cache, "archived", None)
        return bool(archived()) if archived is not None else False

    def resolve(self, key: Hashable, args: tuple, kwds: dict) -> Any:
        """The whole algorithm for a hashable ``key``: hit, load or miss."""
        self._acquire()
        try:
            result = self._lookup(key, _MISSING)
            if result is not _MISSING:
                self._hit(key)
        finally:
            self._release()
        if result is not _MISSING:
            return result
        return self.miss(key, args, kwds)

    def _hit(self, key: Hashable) -> None:
        self.stats[HIT] += 1
        if self.policy.tracks_hits:
            self._touch(key)

    def _touch(self, key: Hashable) -> None:
        try:
            self.policy.touch(key)
        except KeyError:  # the key entered the cache behind the policy's back (load())
            self.policy.insert(key)

    def miss(self, key: Hashable, args: tuple, kwds: dict) -> Any:
        """Not in memory: load it from the archive, or call the function."""
        if self.archived():
            result = self._load(key)
            if result is not _MISSING:
                return result
        result = self.func(*args, **kwds)
        self._store(key, result, MISS)
        return result

    def _load(self, key: Hashable) -> Any:
        self.cache.load(key)  # archive I/O, outside the lock
        self._acquire()
        try:
            result = self._lookup(key, _MISSING)
            if result is not _MISSING:
                self._admit(key, LOAD)
        finally:
            self._release()
        return result

    def _store(self, key: Hashable, result: Any, outcome: int) -> None:
        self._acquire()
        try:
            self.cache[key] = result
            self._admit(key, outcome)
        finally:
            self._release()

    def _admit(self, key: Hashable, outcome: int) -> None:
        """Count a LOAD or MISS of ``key`` (now in the cache) and evict past ``maxsize``."""
        self.stats[outcome] += 1
        self._insert(key)
        maxsize = self.maxsize
        if maxsize is not None and len(self.cache) > maxsize:
            self._evict(maxsize)

    def _evict(self, maxsize: int) -> None:
        cache = self.cache
        archived = self.archived()
        if archived and self.purge:
            cache.dump()
            cache.clear()
            self.policy.clear()
            return
        while len(cache) > maxsize:
            victims = self.policy.victims(cache) or [next(iter(cache))]
            for victim in victims:
                if archived:
                    cache.dump(victim)
                cache.pop(victim, None)

    # --- keys -----------------------------------------------------------------------------
    def key(self, args: tuple, kwds: dict) -> Hashable:
        """The key a call would use (frozen when the default keymap meets unhashables)."""
        key = self.plan(args, kwds)
        try:
            hash(key)
        except TypeError:
            return self._rekey(key, args, kwds)
        return key

    def _rekey(self, key: Any, args: tuple, kwds: dict) -> Hashable:
        if not self.freezes:
            raise TypeError(
                f"cannot cache {_name(self.func)}(...): its key is unhashable; "
                "use the default keymap or a hashing/string keymap"
            )
        try:
            return freeze(key)
        except TypeError as exc:
            raise _unfreezable(self.func, args, kwds, exc) from None

    def unhashable(self, key: Any, args: tuple, kwds: dict) -> Any:
        """A call whose raw key is unhashable: freeze it (or explain), then resolve."""
        if not self.freezes or type(key) is not tuple:
            return self.resolve(self._rekey(key, args, kwds), args, kwds)
        try:
            frozen = tuple(freeze_items(key))
        except TypeError as exc:
            raise _unfreezable(self.func, args, kwds, exc) from None
        # Freezing keeps hashable values as they are (the same objects), so whether the key
        # was unhashable is asked by identity: ``==`` is elementwise on numpy arrays, with no
        # truth value. Expect the next call to be like this one (see _fast_wrapper).
        unhashable = bool(key) and (frozen[0] is not key[0] or any(map(_is_not, frozen, key)))
        self.expect_unhashable[0] = unhashable
        if unhashable:
            key = frozen
        # The hit, inlined: this path serves every call with list/dict/array arguments.
        self._acquire()
        try:
            result = self._lookup(key, _MISSING)
            if result is not _MISSING:
                self.stats[HIT] += 1
                if self.policy.tracks_hits:
                    self._touch(key)
        finally:
            self._release()
        if result is _MISSING:
            return self.miss(key, args, kwds)
        return result

    def bypass(self, args: tuple, kwds: dict) -> Any:
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

    def set_archive(self, obj: Any) -> None:
        from klepto.archives import cache as cache_front

        self.cache.archive = obj.archive if isinstance(obj, cache_front) else obj

    def lookup(self, args: tuple, kwds: dict) -> Any:
        return self.cache[self.key(args, kwds)]


class NoCacheMemo(Memo):
    """``no_cache``: keeps nothing in memory; with an archive, writes every result through."""

    def resolve(self, key: Hashable, args: tuple, kwds: dict) -> Any:
        cache = self.cache
        front = hasattr(cache, "archive") and isinstance(cache, dict)
        if self.archived():
            cache.load(key)
        with self.lock:
            result = _get(cache, key)
            if result is not _MISSING:
                self.stats[LOAD] += 1
                if front:
                    cache.clear()
                return result
        result = self.func(*args, **kwds)
        with self.lock:
            cache[key] = result
            self.stats[MISS] += 1
            if front and len(cache):
                if self.archived():
                    cache.dump()
                cache.clear()
        return result

    miss = resolve

    def clear(self, keepstats: bool = False) -> None:
        if not keepstats:
            with self.lock:
                self.stats[:] = [0, 0, 0]


def _name(func: Callable) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _unfreezable(func: Callable, args: tuple, kwds: dict, exc: TypeError) -> TypeError:
    """The error for a call that cannot be cached, naming the argument at fault."""
    culprit = _culprit(func, args, kwds)
    where = f" argument {culprit!r}:" if culprit is not None else ""
    return TypeError(f"cannot cache {_name(func)}(...):{where} {exc}")


def _culprit(func: Callable, args: tuple, kwds: dict) -> str | None:
    """The name of the first argument of the call that has no hashable frozen form."""
    try:
        named = inspect.signature(func).bind_partial(*args, **kwds).arguments
    except (TypeError, ValueError):  # no signature, or a call that does not bind
        named = {**{f"#{index}": value for index, value in enumerate(args)}, **kwds}
    for name, value in named.items():
        try:
            freeze(value)
        except TypeError:
            return name
    return None


def memoize(memo: Memo) -> Callable[..., Any]:
    """Build the wrapper function for ``memo`` and attach the classic attributes."""
    if memo.safe:  # before no_cache: safe.no_cache falls back like the other safe variants
        wrapper = _safe_wrapper(memo)
    elif isinstance(memo, NoCacheMemo):
        wrapper = _generic_wrapper(memo)
    else:
        wrapper = _fast_wrapper(memo)
    functools.update_wrapper(wrapper, memo.func)
    _attach(wrapper, memo)
    return wrapper


def _fast_wrapper(memo: Memo) -> Callable[..., Any]:
    """The hit path, specialised: no Python frame but this one, explicit lock calls.

    (``acquire``/``release`` cost a third of a ``with lock:`` block on CPython 3.11.)
    After a call with unhashable arguments the wrapper goes straight to the freezing path
    (``memo.expect_unhashable``) instead of paying for a failed lookup first; a call whose
    key turns out hashable switches it back.
    """
    plan, stats = memo.plan, memo.stats
    acquire, release = memo.lock.acquire, memo.lock.release
    getitem = memo.cache.__getitem__
    fast_arity = getattr(plan, "fast_arity", -1)
    policy = memo.policy
    miss, unhashable = memo.miss, memo.unhashable
    expect_unhashable = memo.expect_unhashable
    if not policy.tracks_hits:

        def wrapper(*args: Any, **kwds: Any) -> Any:
            key = args if not kwds and len(args) == fast_arity else plan(args, kwds)
            if expect_unhashable[0]:
                return unhashable(key, args, kwds)
            acquire()
            try:
                result = getitem(key)
                stats[0] += 1
                return result
            except KeyError:
                missing = True
            except TypeError:
                missing = False
            finally:
                release()
            return miss(key, args, kwds) if missing else unhashable(key, args, kwds)

        return wrapper

    touch, insert = policy.touch, policy.insert

    def tracking_wrapper(*args: Any, **kwds: Any) -> Any:
        key = args if not kwds and len(args) == fast_arity else plan(args, kwds)
        if expect_unhashable[0]:
            return unhashable(key, args, kwds)
        acquire()
        try:
            result = getitem(key)
            stats[0] += 1
            try:
                touch(key)
            except KeyError:  # entered the cache behind the policy's back (a bulk load)
                insert(key)
            return result
        except KeyError:
            missing = True
        except TypeError:
            missing = False
        finally:
            release()
        return miss(key, args, kwds) if missing else unhashable(key, args, kwds)

    return tracking_wrapper


def _safe_wrapper(memo: Memo) -> Callable[..., Any]:
    key_of, resolve, bypass = memo.key, memo.resolve, memo.bypass

    def wrapper(*args: Any, **kwds: Any) -> Any:
        try:
            key = key_of(args, kwds)  # hashable (or frozen) by the time it returns
        except Exception:  # safe variants: any failure to make a key means "call uncached"
            return bypass(args, kwds)
        if type(key) is str and _UNFAITHFUL_TEXT.search(key) is not None:
            return bypass(args, kwds)
        return resolve(key, args, kwds)

    return wrapper


# Text keys (the safe variants' ``stringmap``) are only as faithful as the arguments' reprs.
# ``<function f at 0x7f...>`` names an address that a new object may reuse once the old one
# is gone; an elided summary (numpy's ``[0, 1, ..., 9]`` for big arrays, pandas' ``...``
# columns, a recursive list's ``[...]``) is shared by different arguments that look alike.
# Such a call is not cached rather than answered with another call's result; a str argument
# that happens to contain one of these patterns only loses its caching.
_UNFAITHFUL_TEXT = re.compile(
    r" at 0x[0-9a-fA-F]+>|, \.\.\.,|\.\.\.,\n|\[\.\.\.\]|\{\.\.\.\}| \.\.\. "
)


def _generic_wrapper(memo: Memo) -> Callable[..., Any]:
    key_of, resolve = memo.key, memo.resolve

    def wrapper(*args: Any, **kwds: Any) -> Any:
        return resolve(key_of(args, kwds), args, kwds)

    return wrapper


def _attach(wrapper: Any, memo: Memo) -> None:
    cache = memo.cache
    wrapper.info = wrapper.cache_info = memo.info
    wrapper.clear = wrapper.cache_clear = memo.clear
    wrapper.load = cache.load
    wrapper.dump = cache.dump
    wrapper.archived = cache.archived
    wrapper.archive = memo.set_archive
    wrapper.key = lambda *args, **kwds: memo.key(args, kwds)
    wrapper.lookup = lambda *args, **kwds: memo.lookup(args, kwds)
    wrapper.__cache__ = lambda: memo.cache
    wrapper.__mask__ = lambda: memo.ignore
    wrapper.__map__ = lambda: memo.keymap
    wrapper.__memo__ = memo
