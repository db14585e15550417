"""A serializer for Python literals: ``repr`` to write, ``ast.literal_eval`` to read.

It backs the classic ``serialized=False`` flag without its code-execution hazard: classic
klepto wrote Python source and imported it back; here nothing is ever imported or executed.
Only values that survive ``literal_eval(repr(value))`` unchanged (same type, equal value) can
be stored; anything else raises ``ValueError`` at write time, never at read time.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["LiteralSerializer"]


class LiteralSerializer:
    """Python literals (numbers, str, bytes, bool, None and tuples/lists/dicts/sets of them)."""

    name = "literal"
    executes_code = False

    def dumps(self, obj: Any) -> bytes:
        text = repr(obj)
        if not _round_trips(obj, text):
            culprit = _culprit(obj)
            raise ValueError(
                f"serialized=False stores Python literals only; a {type(culprit).__qualname__} "
                f"({repr(culprit)[:80]}) is not one (use serialized=True)"
            )
        return text.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> Any:
        return ast.literal_eval(data.decode("utf-8", "surrogatepass"))

    def settings(self) -> dict[str, Any]:
        return {"serializer": self.name}


def _round_trips(obj: Any, text: str) -> bool:
    try:
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False  # not a literal: the caller raises the explanatory ValueError
    return _same(obj, back)


def _culprit(obj: Any) -> Any:
    """The innermost part of ``obj`` that is not a literal (for the error message)."""
    if isinstance(obj, dict):
        parts: list[Any] = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        parts = list(obj)
    else:
        return obj
    for part in parts:
        if not _round_trips(part, repr(part)):
            return _culprit(part)
    return obj


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1 == 1.0 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)
