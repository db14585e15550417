"""The wrapper functions around a :class:`~klepto._memoize.Memo`, chosen at decoration time.

* the fast wrapper: the classic hit path, specialised (no Python frame but its own, explicit
  lock calls, the positional key inlined);
* the expiring fast wrapper: the same with one deadline check (``ttl=`` over a ``cache``);
* the safe wrapper (``klepto.safe``), the generic wrapper (``no_cache``; per-call logging);
* the async wrapper (:mod:`klepto._memo_async`) for coroutine functions.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any

from klepto._memo_nocache import NoCacheMemo
from klepto._memoize import Memo
from klepto._stampede import NOBODY

__all__ = ["memoize"]


def memoize(memo: Memo) -> Callable[..., Any]:
    """Build the wrapper function for ``memo`` and attach the classic attributes."""
    if inspect.iscoroutinefunction(memo.func):
        from klepto._memo_async import async_wrapper

        wrapper = async_wrapper(memo)
    elif memo.safe:  # before no_cache: safe.no_cache falls back like the other safe variants
        wrapper = _safe_wrapper(memo)
    elif isinstance(memo, NoCacheMemo) or memo.log is not None:
        wrapper = _generic_wrapper(memo)
    elif memo._deadlines is not None:
        wrapper = _expiring_wrapper(memo)
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
    key turns out hashable switches it back. A failed lookup takes the stampede leader's
    slot in the same turn of the lock, when it is free (see :meth:`Memo.lead`).
    """
    if memo.policy.tracks_hits:
        return _tracking_wrapper(memo)
    # Few closure cells (a call copies every one into its frame): what only a miss needs is
    # reached through ``memo``.
    plan, stats = memo.plan, memo.stats
    acquire, release = memo.lock.acquire, memo.lock.release
    getitem = memo.cache.__getitem__
    fast_arity = getattr(plan, "fast_arity", -1)
    expect_unhashable = memo.expect_unhashable

    def wrapper(*args: Any, **kwds: Any) -> Any:
        key = args if not kwds and len(args) == fast_arity else plan(args, kwds)
        if expect_unhashable[0]:
            return memo.unhashable(key, args, kwds)
        acquire()
        try:
            result = getitem(key)
            stats[0] += 1
            return result
        except KeyError:
            # Take the stampede leader's slot if nobody computes anything (see Memo.lead).
            leading = memo._leading is NOBODY and memo.flights is not None and not memo._inflight
            if leading:
                memo._leading = key
            outcome = _LEAD if leading else _MISS
        except TypeError:
            outcome = _UNHASHABLE
        finally:
            release()
        if outcome == _LEAD:
            return memo.lead(key, args, kwds)
        if outcome == _MISS:
            return memo.miss(key, args, kwds)
        return memo.unhashable(key, args, kwds)

    return wrapper


def _tracking_wrapper(memo: Memo) -> Callable[..., Any]:
    """:func:`_fast_wrapper` for a policy that records hits (``touch``)."""
    # Few closure cells (a call copies every one into its frame): what only a miss needs is
    # reached through ``memo``.
    plan, stats = memo.plan, memo.stats
    acquire, release = memo.lock.acquire, memo.lock.release
    getitem = memo.cache.__getitem__
    fast_arity = getattr(plan, "fast_arity", -1)
    expect_unhashable = memo.expect_unhashable
    touch, insert = memo.policy.touch, memo.policy.insert

    def tracking_wrapper(*args: Any, **kwds: Any) -> Any:
        key = args if not kwds and len(args) == fast_arity else plan(args, kwds)
        if expect_unhashable[0]:
            return memo.unhashable(key, args, kwds)
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
            # Take the stampede leader's slot if nobody computes anything (see Memo.lead).
            leading = memo._leading is NOBODY and memo.flights is not None and not memo._inflight
            if leading:
                memo._leading = key
            outcome = _LEAD if leading else _MISS
        except TypeError:
            outcome = _UNHASHABLE
        finally:
            release()
        if outcome == _LEAD:
            return memo.lead(key, args, kwds)
        if outcome == _MISS:
            return memo.miss(key, args, kwds)
        return memo.unhashable(key, args, kwds)

    return tracking_wrapper


# What a failed lookup leads to.
_LEAD, _MISS, _UNHASHABLE = 1, 2, 3


def _expiring_wrapper(memo: Memo) -> Callable[..., Any]:
    """The fast hit path of ``ttl=`` over a ``cache``: a deadline check after the lookup.

    Deadlines live beside the values (``cache._deadlines``); an expired entry is a miss.
    """
    plan, stats = memo.plan, memo.stats
    acquire, release = memo.lock.acquire, memo.lock.release
    getitem = dict.__getitem__.__get__(memo.cache)
    deadline_of = memo._deadlines.get  # type: ignore[union-attr]
    timer = memo.timer
    fast_arity = getattr(plan, "fast_arity", -1)
    tracks = memo.policy.tracks_hits
    touch, insert = memo.policy.touch, memo.policy.insert
    miss, unhashable = memo.miss, memo.unhashable
    expect_unhashable = memo.expect_unhashable

    def wrapper(*args: Any, **kwds: Any) -> Any:
        key = args if not kwds and len(args) == fast_arity else plan(args, kwds)
        if expect_unhashable[0]:
            return unhashable(key, args, kwds)
        acquire()
        try:
            result = getitem(key)
            deadline = deadline_of(key)
            if deadline is None or deadline > timer():
                stats[0] += 1
                if tracks:
                    try:
                        touch(key)
                    except KeyError:  # entered the cache behind the policy's back
                        insert(key)
                return result
            missing = True
        except KeyError:
            missing = True
        except TypeError:
            missing = False
        finally:
            release()
        return miss(key, args, kwds) if missing else unhashable(key, args, kwds)

    return wrapper


def _safe_wrapper(memo: Memo) -> Callable[..., Any]:
    key_of, resolve, bypass = memo.key, memo.resolve, memo.bypass

    def wrapper(*args: Any, **kwds: Any) -> Any:
        try:
            key = key_of(args, kwds)  # hashable (or frozen) by the time it returns
        except Exception:  # safe variants: any failure to make a key means "call uncached"
            return bypass(args, kwds)
        if unfaithful(memo, key):
            return bypass(args, kwds)
        return resolve(key, args, kwds)

    return wrapper


def unfaithful(memo: Memo, key: Any) -> bool:
    """Whether a safe variant's text ``key`` could be shared by different arguments."""
    text = key[-1] if memo.version is not None else key
    return type(text) is str and _UNFAITHFUL_TEXT.search(text) is not None


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
    wrapper.expire = memo.expire
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
