"""Logging of the memoizer: ``logging.getLogger("klepto.memo")``.

Per-call records (hit, miss, load, eviction; all at DEBUG) would cost time on every call,
so whether a decorated function emits them is decided once, when it is decorated: it does
if, at that moment, the ``klepto.memo`` logger is enabled for DEBUG or call logging was
switched on with :func:`log_calls`. Functions decorated otherwise run the plain fast paths
and never log per call. To see every call of your functions::

    import logging, klepto
    logging.basicConfig(level=logging.DEBUG)   # or: klepto.log_calls()
    # ... then import or define the decorated functions

The library never prints; archives log under ``klepto.archives...`` (evictions for
``size_limit`` at INFO, recovered damage at WARNING).
"""

from __future__ import annotations

import logging

__all__ = ["call_logger", "log_calls", "logger"]

logger = logging.getLogger("klepto.memo")
_ENABLED = [False]


def log_calls(enabled: bool = True) -> None:
    """Make functions decorated from now on log every call at DEBUG (``klepto.memo``).

    Functions decorated earlier keep what they were decorated with. The records still go
    through the usual logging configuration (level, handlers) of ``klepto.memo``.
    """
    _ENABLED[0] = bool(enabled)


def call_logger() -> logging.Logger | None:
    """The logger a function decorated now should log its calls to, or None (no logging)."""
    if _ENABLED[0] or logger.isEnabledFor(logging.DEBUG):
        return logger
    return None
