"""The six classic cache decorators, as thin factories over the one memoizer.

``lru_cache(maxsize=100, cache=None, keymap=None, ignore=None, tol=None, deep=False,
purge=False)`` and friends are classes; an instance is a decorator, and one instance applied
to two functions shares one cache object between them (as in classic klepto). Each class only
chooses an eviction policy; ``klepto.safe`` subclasses choose the forgiving variant.

Keyword-only options beyond classic klepto (docs/features.rst), all off or neutral by
default: ``ttl`` and ``timer`` (expiry), ``getsizeof`` (``maxsize`` bounds a total size),
``stampede`` (concurrent callers of a missing key compute it once; on by default, with no
cost on a hit) and ``version`` (a version, or ``'code'``, in every key).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from klepto._memo_nocache import NoCacheMemo
from klepto._memoize import Memo
from klepto._memolog import call_logger
from klepto._policies import get_policy
from klepto._stampede import check_mode
from klepto._wrappers import memoize
from klepto.tools import CacheInfo

if TYPE_CHECKING:
    from klepto._typing import Memoized, P, R

_T = TypeVar("_T")

__all__ = [
    "CacheInfo",
    "Counter",
    "inf_cache",
    "lfu_cache",
    "lru_cache",
    "mru_cache",
    "no_cache",
    "rr_cache",
]


class Counter(dict):  # type: ignore[type-arg]
    """A dict whose missing keys read as 0."""

    def __missing__(self, key: Any) -> int:
        return 0


def _normalise_ignore(ignore: Any) -> tuple[Any, ...]:
    if ignore is None:
        return ()
    if isinstance(ignore, (str, numbers.Integral)):
        return (ignore,)
    return tuple(ignore)


def _check_maxsize(maxsize: Any) -> int | None:
    if maxsize is None:
        return None
    if isinstance(maxsize, bool) or not isinstance(maxsize, numbers.Integral):
        raise TypeError(f"maxsize must be an int or None, not {maxsize!r}")
    if maxsize < 0:
        raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
    return int(maxsize)


def _rounder(tol: Any, deep: bool) -> Callable[..., Any] | None:
    if tol is None:
        return None
    from klepto.rounding import deep_round_factory, simple_round_factory

    return deep_round_factory(tol) if deep else simple_round_factory(tol)


class _CacheDecorator:
    """Shared construction and application of the classic decorators."""

    policy: ClassVar[str] = "lru"
    safe: ClassVar[bool] = False
    #: Constructor arguments a class overrides whatever the caller passes.
    forced: ClassVar[dict[str, Any]] = {}
    #: The sibling classes that ``maxsize=0`` and ``maxsize=None`` redirect to.
    redirects: ClassVar[dict[Any, str]] = {0: "no_cache", None: "inf_cache"}

    def __new__(cls, *args: Any, **kwds: Any) -> Any:
        if cls.redirects:
            maxsize = kwds["maxsize"] if "maxsize" in kwds else (args[0] if args else 100)
            target = cls.redirects.get(maxsize) if maxsize in (0, None) else None
            if target is not None:
                return cls._family()[target](*args, **kwds)
        return super().__new__(cls)

    @classmethod
    def _family(cls) -> dict[str, type]:
        import importlib

        module = importlib.import_module("klepto.safe" if cls.safe else __name__)
        return {name: getattr(module, name) for name in ("no_cache", "inf_cache")}

    def __init__(
        self,
        maxsize: int | None = 100,
        cache: Any = None,
        keymap: Any = None,
        ignore: Any = None,
        tol: Any = None,
        deep: bool = False,
        purge: bool = False,
        *,
        ttl: float | None = None,
        timer: Callable[[], float] | None = None,
        getsizeof: Callable[[Any], int] | None = None,
        stampede: bool | str = True,
        version: Any = None,
    ) -> None:
        maxsize = self.forced.get("maxsize", maxsize)
        purge = self.forced.get("purge", purge)
        #: The options beyond classic klepto (``__state__`` keeps the classic keys only).
        self.__options__: dict[str, Any] = {
            "ttl": ttl,
            "timer": timer,
            "getsizeof": getsizeof,
            "stampede": check_mode(stampede),
            "version": version,
        }
        self.__state__ = {
            "maxsize": _check_maxsize(maxsize),
            "cache": _make_cache(cache),
            "keymap": keymap if keymap is not None else self._default_keymap(),
            "ignore": _normalise_ignore(ignore),
            "roundargs": _rounder(tol, deep),
            "tol": tol,
            "deep": deep,
            "purge": bool(purge),
        }

    def _default_keymap(self) -> Any:
        from klepto import keymaps

        return keymaps.stringmap(flat=False) if self.safe else keymaps.stablemap()

    @overload
    def __call__(self, user_function: classmethod[_T, P, R]) -> classmethod[_T, P, R]: ...

    @overload
    def __call__(self, user_function: staticmethod[P, R]) -> staticmethod[P, R]: ...  # type: ignore[overload-overlap]

    @overload
    def __call__(self, user_function: Callable[P, R]) -> Memoized[P, R]: ...

    def __call__(self, user_function: Any) -> Any:
        if isinstance(user_function, (classmethod, staticmethod)):
            return type(user_function)(self(user_function.__func__))
        if not callable(user_function):
            raise TypeError(f"cannot memoize a non-callable {user_function!r}")
        return memoize(self._memo(user_function))

    def _memo(self, user_function: Callable[..., Any]) -> Memo:
        state, options = self.__state__, self.__options__
        getsizeof = options["getsizeof"]
        # A size-bounded cache's LFU batch is counted in entries, not in units of size.
        policy = get_policy(self.policy, None if getsizeof else state["maxsize"])
        kwds: dict[str, Any] = {
            "cache": state["cache"],
            "policy": policy,
            "keymap": state["keymap"],
            "ignore": state["ignore"],
            "rounder": state["roundargs"],
            "maxsize": state["maxsize"],
            "purge": state["purge"],
            "safe": self.safe,
            "ttl": options["ttl"],
            "timer": options["timer"],
            "stampede": options["stampede"],
            "version": options["version"],
            "log": call_logger(),
        }
        if self.policy == "no":
            return NoCacheMemo(user_function, **kwds)
        if getsizeof is not None and state["maxsize"] is not None:
            from klepto._memo_size import SizedMemo

            return SizedMemo(user_function, getsizeof=getsizeof, **kwds)
        return Memo(user_function, **kwds)

    def __get__(self, obj: Any, objtype: Any = None) -> Callable[..., Any]:
        call: Callable[..., Any] = self.__call__
        return functools.partial(call, obj)

    def __reduce__(self) -> tuple[Any, ...]:
        state = self.__state__
        args: tuple[Any, ...] = (state["maxsize"], state["cache"], state["keymap"], state["ignore"])
        args += (state["tol"], state["deep"], state["purge"])
        options = {k: v for k, v in self.__options__.items() if v != _DEFAULT_OPTIONS[k]}
        if not options:
            return (type(self), args)
        return (_rebuild, (type(self), args, options))

    def __repr__(self) -> str:
        state = self.__state__
        return f"{type(self).__name__}(maxsize={state['maxsize']!r}, keymap={state['keymap']!r})"


_DEFAULT_OPTIONS: dict[str, Any] = {
    "ttl": None,
    "timer": None,
    "getsizeof": None,
    "stampede": True,
    "version": None,
}


def _rebuild(cls: type, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    return cls(*args, **options)


def _make_cache(cache: Any) -> Any:
    from klepto.archives import cache as cache_front

    if cache is None:
        return cache_front()
    if type(cache) is dict:
        return cache_front(cache)
    return cache


class no_cache(_CacheDecorator):
    """Never keeps results in memory; with an archive, every result is written through."""

    policy = "no"
    forced: ClassVar[dict[str, Any]] = {"maxsize": 0, "purge": True}
    redirects: ClassVar[dict[Any, str]] = {}


class inf_cache(_CacheDecorator):
    """An unbounded cache: never evicts."""

    policy = "inf"
    forced: ClassVar[dict[str, Any]] = {"maxsize": None, "purge": False}
    redirects: ClassVar[dict[Any, str]] = {}


class lru_cache(_CacheDecorator):
    """Evicts the least recently used result past ``maxsize``."""

    policy = "lru"


class mru_cache(_CacheDecorator):
    """Evicts the most recently used result (before the newest) past ``maxsize``."""

    policy = "mru"


class lfu_cache(_CacheDecorator):
    """Evicts the ``max(2, maxsize // 10)`` least frequently used results past ``maxsize``."""

    policy = "lfu"


class rr_cache(_CacheDecorator):
    """Evicts a random result past ``maxsize`` (drawn with the global ``random`` module)."""

    policy = "rr"
