"""Naming memoized functions and explaining calls that cannot be keyed."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from klepto._canonical import freeze

__all__ = ["name_of", "unfreezable"]


def name_of(func: Callable[..., Any]) -> str:
    """The qualified name of ``func`` (or its repr), for messages and log records."""
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def unfreezable(
    func: Callable[..., Any], args: tuple[Any, ...], kwds: dict[str, Any], exc: TypeError
) -> TypeError:
    """The error for a call that cannot be cached, naming the argument at fault."""
    culprit = _culprit(func, args, kwds)
    where = f" argument {culprit!r}:" if culprit is not None else ""
    return TypeError(f"cannot cache {name_of(func)}(...):{where} {exc}")


def _culprit(func: Callable[..., Any], args: tuple[Any, ...], kwds: dict[str, Any]) -> str | None:
    """The name of the first argument of the call that has no hashable frozen form."""
    try:
        named = inspect.signature(func).bind_partial(*args, **kwds).arguments
    except (TypeError, ValueError):  # no signature, or a call that does not bind
        named = {**{f"#{index}": value for index, value in enumerate(args)}, **kwds}
    for name, value in named.items():
        try:
            freeze(value)
        except TypeError:
            return name
    return None
