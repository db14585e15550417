"""Small helpers shared by the classic klepto API.

``CacheInfo`` is the statistics record returned by ``info()`` of every memoized function;
``isiterable``, ``IS_PYPY`` and ``_b`` are kept because classic user code and tests import them.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from typing import Any

__all__ = ["isiterable"]

# Field names and order are part of the contract: callers unpack them positionally.
CacheInfo = namedtuple("CacheInfo", ["hit", "miss", "load", "maxsize", "size"])

# Classic klepto probed ``ctypes.pythonapi`` (absent on PyPy); asking the interpreter directly
# gives the same answer without importing ctypes.
IS_PYPY: bool = sys.implementation.name == "pypy"


def isiterable(x: Any) -> bool:
    """Return True if ``iter(x)`` succeeds (so strings and dicts are iterable)."""
    try:
        iter(x)
    except TypeError:
        return False
    return True


def _b(message: str) -> bytes:
    """Encode ``message`` as latin-1 bytes (``'abc'`` -> ``b'abc'``)."""
    return message.encode("latin-1")
