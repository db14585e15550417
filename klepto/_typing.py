"""Static types of the public API: what a memoized function looks like to a type checker.

``@klepto.lru_cache()`` applied to ``def f(x: int, y: float = 0.5) -> str`` gives a
``Memoized[(x: int, y: float = 0.5), str]``: calling it is checked against ``f``'s signature
and returns ``str`` (for an ``async def``, the coroutine ``f`` returns, as calling ``f``
would), and the attributes of every memoized function are typed below. A memoized method
is typed by its result only (its arguments are not checked through the binding).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, Protocol, TypeVar

from klepto.tools import CacheInfo

__all__ = ["Memoized", "P", "R"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Memoized(Protocol[P, R_co]):
    """A memoized function: the wrapped function's signature, plus klepto's attributes."""

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The decorated function."""

    def __call__(self, *args: P.args, **kwds: P.kwargs) -> R_co: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Memoized[..., R_co]:
        """As a method: bound to ``instance`` (its arguments are not checked, its result is)."""

    def info(self) -> CacheInfo:
        """Hits, misses, loads, maxsize and current size."""

    def cache_info(self) -> CacheInfo:
        """Alias of :meth:`info` (functools' name)."""

    def clear(self, keepstats: bool = False) -> None:
        """Empty the in-memory cache (and the statistics unless ``keepstats``)."""

    def cache_clear(self) -> None:
        """Alias of :meth:`clear` (functools' name)."""

    def expire(self) -> int:
        """Remove expired results (``ttl=``) from memory and the archive; how many."""

    def key(self, *args: P.args, **kwds: P.kwargs) -> Hashable:
        """The cache key of a call."""

    def lookup(self, *args: P.args, **kwds: P.kwargs) -> Any:
        """The cached result of a call (``KeyError`` if there is none)."""

    def load(self, *keys: Any) -> None:
        """Load results from the archive into memory (all of them, or ``keys``)."""

    def dump(self, *keys: Any) -> None:
        """Write results from memory to the archive (all of them, or ``keys``)."""

    def archived(self, *on: bool) -> bool:
        """Whether an archive is attached; ``archived(False)`` parks it."""

    def archive(self, obj: Any) -> None:
        """Attach ``obj`` (an archive or a cache front's archive) as the archive."""

    def __cache__(self) -> Any:
        """The cache object (a ``cache`` front or a raw archive)."""

    def __mask__(self) -> tuple[Any, ...]:
        """The ignored arguments."""

    def __map__(self) -> Any:
        """The keymap."""
