"""The "safe" cache decorators: when a key cannot be made, call the function uncached.

Same classes, attributes and constructor as :mod:`klepto._cache`, with two differences:

* the default keymap is ``stringmap(flat=False)`` (keys are strings such as
  ``"((), {'y': 2, 'x': 1})"``, so unhashable arguments work);
* any exception while rounding, binding or encoding the key (or an unhashable key) makes the
  wrapper call the function with the original arguments, count a MISS and cache nothing.

Exceptions from the archive (loading, storing, dumping) and from the function itself still
propagate: "safe" is about keys only.
"""

from __future__ import annotations

from klepto import _cache
from klepto._cache import Counter

__all__ = ["Counter", "inf_cache", "lfu_cache", "lru_cache", "mru_cache", "no_cache", "rr_cache"]


class no_cache(_cache.no_cache):
    __doc__ = _cache.no_cache.__doc__
    safe = True


class inf_cache(_cache.inf_cache):
    __doc__ = _cache.inf_cache.__doc__
    safe = True


class lru_cache(_cache.lru_cache):
    __doc__ = _cache.lru_cache.__doc__
    safe = True


class mru_cache(_cache.mru_cache):
    __doc__ = _cache.mru_cache.__doc__
    safe = True


class lfu_cache(_cache.lfu_cache):
    __doc__ = _cache.lfu_cache.__doc__
    safe = True


class rr_cache(_cache.rr_cache):
    __doc__ = _cache.rr_cache.__doc__
    safe = True
