"""Stampede protection: concurrent callers of one missing key compute it once.

Threads: the first caller of a missing key (the *leader*) records the key as being computed
and computes; later callers of that key wait on a ``threading.Condition`` built on the
memo's own lock, then find the leader's result in the cache (a hit). The uncontended cost
is two attribute stores per miss; nothing is added to a hit. If the leader raises, the
error is its own: a waiter computes the key next (as if it had called alone), and so does a
waiter that finds the result already evicted. ``no_cache`` keeps nothing to find: its
waiters load the result from the archive, or compute it again when there is none. A
function that calls itself with its own arguments is not made to wait for itself.

Processes: a memo whose cache is a raw archive that locks across processes
(``archive.locks_processes``: directory, file and SQLite archives) also takes the archive's
per-key lock around "look again, compute, store", so processes sharing the archive compute a
key once. Behind a ``cache`` front this needs the result in the archive before the lock is
released, which classic klepto does not do (results reach the archive on ``dump()`` or
eviction), so it is opt-in there: ``stampede='process'`` writes each new result through.

Modes (the decorators' ``stampede=`` argument): ``True`` (default: threads, and processes
for raw archives), ``'thread'`` (threads only), ``'process'`` (as True, plus fronts with a
backend write through under the backend's lock), ``False`` (no protection).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from klepto._memoize import Memo

__all__ = ["MISSING", "MODES", "NOBODY", "Flights", "check_mode", "shared_lock"]

MODES = (True, False, "thread", "process")
#: "No result": the memoizer's sentinel for a key not found (or expired).
MISSING: Any = object()
#: The leader's slot is free.
NOBODY: Any = object()


def check_mode(mode: Any) -> bool | str:
    """``mode`` if it is a valid ``stampede=`` argument, else ``ValueError``."""
    if mode not in MODES or (mode is not True and mode is not False and type(mode) is not str):
        raise ValueError(f"stampede must be True, False, 'thread' or 'process', not {mode!r}")
    return mode


class Flights:
    """The keys being computed for one memo, and the callers waiting for them.

    A leader is either in the memo's *slot* (``memo._leading``: one key, set and cleared
    with an attribute store, which is all a single-threaded program ever pays) or, when the
    slot is taken, in ``inflight``, a set. Waiters wait on ``ready``, a condition on the
    memo's lock, until the key is no longer being computed, then look it up again: a hit, or
    (the leader raised, or its result is already evicted) they compute it themselves.
    """

    def __init__(self, memo: Memo) -> None:
        self._memo = memo
        self.ready = threading.Condition(memo.lock)
        self.inflight: set[Hashable] = set()

    def _computing(self, key: Hashable) -> bool:
        return bool(self._memo._leading == key or key in self.inflight)

    def join(self, key: Hashable, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """A miss (not led from the slot): hit after all, wait for the leader, or lead."""
        memo = self._memo
        recursive = False
        while True:
            with self.ready:
                result = memo._fresh(key)
                if result is not MISSING:
                    memo._hit(key)
                    return result
                if not self._computing(key):
                    self.inflight.add(key)
                    break
                if _leads_here(memo, key):  # the function calls itself with its own key
                    recursive = True
                    break
                memo._waiters += 1  # on the memo: landing reads it on every miss
                try:
                    while self._computing(key):
                        self.ready.wait()
                finally:
                    memo._waiters -= 1
        if recursive:
            return memo._compute(key, args, kwds)  # as without protection: never wait on itself
        try:
            return memo._compute(key, args, kwds)
        finally:
            self.land(key)

    def land(self, key: Hashable, slot: bool = False) -> None:
        """End ``key``'s flight (``slot``: the slot's); wake the waiters."""
        memo = self._memo
        memo._acquire()  # the condition's lock, without Condition.__enter__'s Python frame
        try:
            if slot:
                if memo._leading == key:
                    memo._leading = NOBODY
            else:
                self.inflight.discard(key)
            if memo._waiters:
                self.ready.notify_all()
        finally:
            memo._release()


def _leads_here(memo: Memo, key: Hashable) -> bool:
    """Whether this thread is computing ``key`` for ``memo`` already (a recursive call):
    waiting would wait for itself. (A slow path: only callers about to wait ask.)"""
    frame = sys._getframe(2)  # above the caller: the asking join itself does not count
    codes = (memo.lead.__code__, Flights.join.__code__)
    while frame is not None:
        if frame.f_code in codes and frame.f_locals.get("key") == key:
            owner = frame.f_locals.get("memo", frame.f_locals.get("self"))
            if owner is memo or getattr(owner, "_memo", None) is memo:
                return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def shared_lock(memo: Memo) -> Callable[[Any], Any] | None:
    """The cross-process ``lock(key)`` a miss of ``memo`` takes now, or None.

    (Called per miss only when the memo could lock at all, see ``Memo.locking``.)
    """
    if memo.locking == "raw":
        return memo.cache.lock  # type: ignore[no-any-return]
    if memo.locking == "front" and memo.archived():
        archive = memo.cache.archive
        if archive.locks_processes:
            return archive.lock  # type: ignore[no-any-return]
    return None
