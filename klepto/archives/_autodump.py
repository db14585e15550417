"""Writing what a cache front has not dumped when the interpreter exits normally.

Classic klepto lost every result a program forgot to ``dump()``. A :class:`cache` front with
a real backend registers here (weakly) when it first holds an unsaved entry; at normal exit
each one still alive writes its unsaved entries to its backend. Failures are logged, one
cache at a time, so one broken backend does not stop the others (there is no caller left to
raise to at exit).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any

log = logging.getLogger("klepto.archives")

# id -> weak reference (a cache is a dict, so unhashable: no WeakSet).
_pending: dict[int, weakref.ref[Any]] = {}
_guard = threading.Lock()
_registered = False


def register(front: Any) -> None:
    """Remember ``front`` until exit (weakly: a collected cache needs nothing)."""
    global _registered
    ident = id(front)
    with _guard:
        if ident in _pending:
            return
        _pending[ident] = weakref.ref(front, lambda _ref, ident=ident: _forget(ident))  # type: ignore[misc]
        if not _registered:
            atexit.register(flush_all)
            _registered = True


def _forget(ident: int) -> None:
    with _guard:
        _pending.pop(ident, None)


def unregister(front: Any) -> None:
    _forget(id(front))


def flush_all() -> int:
    """Dump the unsaved entries of every registered cache; return how many caches failed."""
    with _guard:
        fronts = [front for front in (ref() for ref in _pending.values()) if front is not None]
        _pending.clear()
    failed = 0
    for front in fronts:
        try:
            front.flush()
        except Exception:  # at exit there is no caller to raise to: log, go on with the rest
            failed += 1
            log.exception("could not write the unsaved entries of %r at exit", front)
    return failed
