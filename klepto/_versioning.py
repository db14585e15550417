"""Invalidation on code change: ``version=`` puts a version into every key of a function.

``version=value`` (any value with a stable encoding: a str, a number, a tuple of them...)
makes keys ``(VERSION, value, *key)``, so results stored under another version, by an older
build of the function or by a sibling sharing the cache, are never served. ``version='code'``
uses a digest of the function's code instead, which changes whenever the function does:

* its bytecode, constants (nested functions, lambdas and comprehensions included), the
  names it uses and its variable names;
* its default values (a default with no stable encoding contributes only its type's name).

The docstring, the file name and the line numbers are left out (editing a docstring or
moving the function does not change what it computes), and so are closure cells and the
globals and functions it calls: a change *there* needs an explicit ``version=``. The
digest depends on the Python version (bytecode does), and is the same in every process.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from collections.abc import Callable, Hashable
from typing import Any

from klepto._canonical import Tag, stable_bytes

__all__ = ["VERSION", "code_digest", "resolve_version", "versioned_plan"]

#: Heads the key of a versioned function: ``(VERSION, version, *key)``.
VERSION = Tag("VERSION", __name__)


def resolve_version(func: Callable[..., Any], version: Any) -> Any:
    """The version to key ``func``'s results with: ``version`` itself, its code digest
    (``'code'``), or None (no versioning)."""
    if version is None:
        return None
    if isinstance(version, str) and version == "code":
        return "code:" + code_digest(func)
    try:
        stable_bytes(version)
    except TypeError as exc:
        raise TypeError(
            f"version must have a stable encoding (str, number, tuple): {exc}"
        ) from None
    return version


def code_digest(func: Callable[..., Any]) -> str:
    """A hex digest of ``func``'s code and defaults (see the module docstring)."""
    function = _function_of(func)
    digest = hashlib.blake2b(digest_size=16)
    _feed_code(digest, function.__code__, function.__doc__)
    _feed(digest, b"d", _stable(function.__defaults__))
    _feed(digest, b"k", _stable(function.__kwdefaults__))
    return digest.hexdigest()


def _function_of(func: Any) -> types.FunctionType:
    """The plain Python function behind a method, classmethod, partial or decorator."""
    seen = func
    while True:
        if isinstance(seen, (classmethod, staticmethod, types.MethodType)):
            seen = seen.__func__
        elif isinstance(seen, functools.partial):
            seen = seen.func
        else:
            unwrapped = inspect.unwrap(seen)
            if unwrapped is seen:
                break
            seen = unwrapped
    if not isinstance(seen, types.FunctionType):
        raise TypeError(f"version='code' needs a Python function, not {func!r}")
    return seen


def _feed_code(digest: Any, code: types.CodeType, docstring: str | None = None) -> None:
    _feed(digest, b"c", code.co_code)
    _feed(digest, b"n", stable_bytes(code.co_names))
    _feed(digest, b"v", stable_bytes(code.co_varnames))
    for index, constant in enumerate(code.co_consts):
        if isinstance(constant, types.CodeType):
            _feed_code(digest, constant)
        elif index == 0 and docstring is not None and constant == docstring:
            continue  # the docstring does not change what the function computes
        else:
            _feed(digest, b"k", _stable(constant))


def _stable(value: Any) -> bytes:
    try:
        return stable_bytes(value)
    except TypeError:
        # Ellipsis, or a default object: its type is all that is stable across processes.
        kind = type(value)
        return f"{kind.__module__}.{kind.__qualname__}".encode()


def _feed(digest: Any, tag: bytes, data: bytes) -> None:
    digest.update(tag + len(data).to_bytes(8, "big") + data)


def versioned_plan(
    plan: Callable[[tuple[Any, ...], dict[str, Any]], Any], version: Hashable
) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """``plan`` with ``(VERSION, version)`` in front of every key (no positional fast path)."""
    prefix = (VERSION, version)

    def key_of(args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        key = plan(args, kwds)
        return prefix + key if type(key) is tuple else (*prefix, key)

    return key_of
