"""Rounding of float arguments, so that nearly equal calls share one cache key.

Three decorators (``simple_round``, ``shallow_round``, ``deep_round``) differ only in how far
into containers they look. Each holds a *rounder*, ``rounder(*args, **kwds) -> (args, kwds)``,
with the tolerance in ``rounder.tol``; the ``*_round_factory(tol)`` functions build rounders
directly (the memoizers use them to round the key only, never the real call). Only ``float``
instances are rounded, with ``round(value, tol)``; ``tol=None`` disables rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["deep_round", "shallow_round", "simple_round"]


def _round_simple(value: Any, tol: int) -> Any:
    return round(value, tol) if isinstance(value, float) else value


def _round_deep(value: Any, tol: int) -> Any:
    if isinstance(value, float):
        return round(value, tol)
    if isinstance(value, (str, BaseException)):
        return value
    if isinstance(value, dict):
        return {key: _round_deep(item, tol) for key, item in value.items()}
    try:
        items = iter(value)
    except TypeError:
        return value
    # Rebuilding with the argument's own type is the contract; a type that cannot be rebuilt
    # from an iterable (a generator, a namedtuple) raises TypeError, as classic klepto did.
    return type(value)(_round_deep(item, tol) for item in items)


def _round_shallow(value: Any, tol: int) -> Any:
    if isinstance(value, float):
        return round(value, tol)
    # Strings, bytes and mappings are left alone rather than rebuilt from their elements, and
    # iterators are not consumed (the caller still needs them).
    if isinstance(value, (str, bytes, bytearray, Mapping)):
        return value
    try:
        if iter(value) is value:
            return value
        return type(value)([_round_simple(item, tol) for item in value])
    except (TypeError, ValueError):
        return value


class _Rounder:
    """``rounder(*args, **kwds) -> (args, kwds)`` with ``tol``; picklable by reference."""

    __slots__ = ("_round_value", "tol")

    def __init__(self, round_value: Callable[[Any, int], Any], tol: int | None) -> None:
        self._round_value = round_value
        self.tol = tol

    # Positional-only ``self``: a keyword argument named ``self`` is just another argument.
    def __call__(self, /, *args: Any, **kwds: Any) -> tuple[tuple[Any, ...], dict[Any, Any]]:
        tol = self.tol
        if tol is None:
            return args, kwds
        round_value = self._round_value
        rounded_args = tuple(round_value(arg, tol) for arg in args)
        return rounded_args, {name: round_value(value, tol) for name, value in kwds.items()}

    def __repr__(self) -> str:
        return f"<rounder {self._round_value.__name__} tol={self.tol!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Rounder, (self._round_value, self.tol))


def simple_round_factory(tol: int | None) -> _Rounder:
    """Return a rounder that rounds top-level float arguments only."""
    return _Rounder(_round_simple, tol)


def shallow_round_factory(tol: int | None) -> _Rounder:
    """Return a rounder that rounds float arguments and the floats directly inside them."""
    return _Rounder(_round_shallow, tol)


def deep_round_factory(tol: int | None) -> _Rounder:
    """Return a rounder that rounds floats at any depth of nested containers."""
    return _Rounder(_round_deep, tol)


class _RoundingDecorator:
    """Shared shape of the three decorators; subclasses choose the rounder factory."""

    _factory: Callable[[int | None], _Rounder] = staticmethod(simple_round_factory)

    def __init__(self, tol: int | None = 0) -> None:
        self.__round__ = type(self)._factory(tol)

    def __call__(self, f: Callable[..., Any]) -> Callable[..., Any]:
        rounder = self.__round__

        def rounded(*args: Any, **kwds: Any) -> Any:
            args, kwds = rounder(*args, **kwds)
            return f(*args, **kwds)

        rounded.__wrapped__ = f  # type: ignore[attr-defined]
        return rounded

    def __get__(self, obj: Any, objtype: type | None = None) -> functools.partial[Any]:
        return functools.partial(self.__call__, obj)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.__round__.tol,))


class simple_round(_RoundingDecorator):
    """Decorator calling ``f`` with top-level float arguments rounded to ``tol`` digits."""

    _factory = staticmethod(simple_round_factory)


class shallow_round(_RoundingDecorator):
    """Decorator calling ``f`` with floats rounded at the top level and one level down."""

    _factory = staticmethod(shallow_round_factory)


class deep_round(_RoundingDecorator):
    """Decorator calling ``f`` with floats rounded at every depth of nested containers."""

    _factory = staticmethod(deep_round_factory)
