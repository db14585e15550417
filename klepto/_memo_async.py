"""Memoizing coroutine functions: an ``async def`` wrapper that awaits before it stores.

The wrapper caches what the coroutine *returns*, never the coroutine object. Memory lookups
run in the event loop (they are dict lookups); anything that may touch storage -- a raw
archive as the cache, loading from or dumping to a backend, evicting with an archive, the
cross-process lock -- runs in a worker thread (``asyncio.to_thread``), so the loop is never
blocked. Statistics are those of the sync wrapper: a hit, a miss or a load per call.

Concurrent awaiters of one missing key (in one event loop or in several, in any threads)
compute it once: the first becomes the leader, the others await its result through a
``concurrent.futures.Future``. If the leader fails or is cancelled, a waiter leads next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from klepto._memo_nocache import NoCacheMemo
from klepto._memoize import MISS, Memo
from klepto._memokeys import name_of
from klepto._stampede import MISSING, shared_lock
from klepto._wrappers import unfaithful

__all__ = ["async_wrapper"]

T = TypeVar("T")


class _LeaderFailed(Exception):
    """The leader of a key raised: a waiter computes it instead."""


def async_wrapper(memo: Memo) -> Callable[..., Awaitable[Any]]:
    """The ``async def`` wrapper for a memo of a coroutine function."""
    flights: dict[Hashable, concurrent.futures.Future[Any]] = {}
    memo.async_flights = flights  # type: ignore[attr-defined]

    async def wrapper(*args: Any, **kwds: Any) -> Any:
        try:
            key = memo.key(args, kwds)
        except Exception:
            if not memo.safe:
                raise
            return await _bypass(memo, args, kwds)  # safe variants: call uncached
        if memo.safe and unfaithful(memo, key):
            return await _bypass(memo, args, kwds)
        result = await _off_loop(_storage_read(memo), memo.probe, key)
        if result is not MISSING:
            return result
        if memo.stampede is False:
            return await _compute(memo, key, args, kwds)
        return await _once(memo, flights, key, args, kwds)

    return wrapper


async def _off_loop(io: bool, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)``: in a worker thread if it may do I/O, else right here."""
    if io:
        return await asyncio.to_thread(func, *args)
    return func(*args)


def _storage_read(memo: Memo) -> bool:
    """Whether looking a key up reads storage (a raw archive or another mapping as cache)."""
    return memo._front is None


def _storage_write(memo: Memo) -> bool:
    """Whether storing a result may write storage (evictions dump to an archive)."""
    return memo._front is None or memo.archived()


async def _once(
    memo: Memo,
    flights: dict[Hashable, concurrent.futures.Future[Any]],
    key: Hashable,
    args: tuple[Any, ...],
    kwds: dict[str, Any],
) -> Any:
    while True:
        with memo.lock:
            future = flights.get(key)
            leading = future is None
            if future is None:
                future = flights[key] = concurrent.futures.Future()
                future.set_running_or_notify_cancel()  # a cancelled waiter cannot cancel it
        if leading:
            return await _lead(memo, flights, key, future, args, kwds)
        try:
            result = await asyncio.wrap_future(future)
        except _LeaderFailed:
            continue
        with memo.lock:
            memo.served(key)
        return result


async def _lead(
    memo: Memo,
    flights: dict[Hashable, concurrent.futures.Future[Any]],
    key: Hashable,
    future: concurrent.futures.Future[Any],
    args: tuple[Any, ...],
    kwds: dict[str, Any],
) -> Any:
    try:
        # A leader may have finished between this caller's lookup and its flight.
        result = await _off_loop(_storage_read(memo), memo.probe, key)
        if result is MISSING:
            result = await _compute(memo, key, args, kwds)
    except BaseException:
        with memo.lock:
            del flights[key]
        future.set_exception(_LeaderFailed())
        raise
    with memo.lock:
        del flights[key]
    future.set_result(result)
    return result


async def _compute(memo: Memo, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
    """Load from the archive or await the function, under the cross-process lock if any."""
    lock = shared_lock(memo) if memo.locking is not None else None
    if lock is None:
        return await _compute_unlocked(memo, key, args, kwds)
    held = lock(key)
    await asyncio.to_thread(held.__enter__)
    try:
        result = await asyncio.to_thread(memo.recheck_locked, key)
        if result is MISSING:
            result = await _compute_unlocked(memo, key, args, kwds, archived=False)
            await asyncio.to_thread(memo.publish_locked, key)
        return result
    finally:
        await asyncio.to_thread(held.__exit__, None, None, None)


async def _compute_unlocked(
    memo: Memo, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any], archived: bool = True
) -> Any:
    if isinstance(memo, NoCacheMemo):
        result = await _off_loop(_storage_write(memo), memo.take, key)
        if result is MISSING:
            result = await memo.func(*args, **kwds)
            await _off_loop(_storage_write(memo), memo.give, key, result)
        return result
    if archived and memo.archived():
        result = await asyncio.to_thread(memo._load, key)
        if result is not MISSING:
            return result
    result = await memo.func(*args, **kwds)
    if memo.log is not None:
        memo.log.debug("%s: miss %r", name_of(memo.func), key)
    await _off_loop(_storage_write(memo), memo._store, key, result, MISS)
    return result


async def _bypass(memo: Memo, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
    result = await memo.func(*args, **kwds)
    with memo.lock:
        memo.stats[MISS] += 1
    return result
