"""``stablemap``: the default keymap of the decorators: the call bound to the signature.

At decoration time it builds a binding plan (:mod:`klepto._binding`), so a call's key is the
tuple of its argument values in parameter order, defaults filled in and ignored parameters
left out: ``f(1, 2)``, ``f(1, y=2)`` and ``f(y=2, x=1)`` share the key ``(1, 2)``. Keys are
plain values, equal in every process (no salted ``hash()``), and reach storage through
:func:`klepto._canonical.stable_bytes`. Unhashable arguments (lists, dicts, sets, numpy
arrays, dataclasses) are frozen into faithful hashable forms by the memoizer
(``freezes = True``). Called directly (after classic ``_keygen`` normalisation) it behaves
like the raw :class:`~klepto.keymaps.keymap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klepto._binding import plan_call
from klepto.keymaps._base import NOSENTINEL, keymap

__all__ = ["stablemap"]


class stablemap(keymap):
    """The decorators' default keymap (see the module docstring).

    ``typed=True`` appends the type of every key value, so ``f(3)`` and ``f(3.0)`` get
    different keys (by default they share one, because ``3 == 3.0``).
    """

    #: The memoizer may turn this keymap's unhashable keys into hashable frozen forms.
    freezes = True
    __module__ = "klepto.keymaps"  # pickled by reference under its public name

    def __init__(self, typed: bool = False, sentinel: Any = NOSENTINEL, **kwds: Any) -> None:
        super().__init__(typed, True, sentinel, **kwds)

    def plan(
        self,
        func: Callable[..., Any],
        ignore: Any,
        rounder: Callable[..., tuple[tuple[Any, ...], dict[Any, Any]]] | None = None,
    ) -> Callable[[tuple[Any, ...], dict[Any, Any]], Any]:
        """Return ``key_of(args, kwds)`` for ``func``, with ``fast_arity`` when it has one."""
        if self.__outer__ is not None:  # chained: the classic algorithm composes the keymaps
            return super().plan(func, ignore, rounder)
        plan = plan_call(func, ignore)
        if not self.typed and rounder is None:
            return plan
        return _decorated_plan(plan, self.typed, rounder)


def _decorated_plan(
    plan: Callable[[tuple[Any, ...], dict[Any, Any]], tuple[Any, ...]],
    typed: bool,
    rounder: Callable[..., Any] | None,
) -> Callable[[tuple[Any, ...], dict[Any, Any]], tuple[Any, ...]]:
    """The plan with rounding before it and/or value types appended after it."""

    def key_of(args: tuple[Any, ...], kwds: dict[Any, Any]) -> tuple[Any, ...]:
        if rounder is not None:
            args, kwds = rounder(*args, **kwds)
        key = plan(args, kwds)
        if typed:
            key += tuple(type(value) for value in key)
        return key

    return key_of
