"""Call binding plans: from a function's signature, decided once, to a key per call.

The default keymap turns a call into the tuple of its *bound* argument values, in parameter
order, so that ``f(1, 2)``, ``f(1, y=2)`` and ``f(x=1, y=2)`` share a key and defaults are
filled in. Everything that depends only on the signature (names, positions, defaults,
ignored parameters) is computed here at decoration time; the per-call work is a few tuple
operations. The commonest call, all parameters passed positionally, needs no work at all:
its key is ``args`` itself (``Plan.fast_arity`` tells the memoizer when).

Key layout: ``(*positional parameters, *surplus varargs, *keyword-only parameters)`` and,
when extra keywords reach a ``**kwargs`` function, ``KWDS`` followed by the sorted
``name, value`` pairs. Ignored parameters are left out of the key entirely; an ignored
position among the surplus varargs becomes ``NULL`` (dropping it would let calls with
different numbers of arguments share a key). Because the number of keyword-only parameters
is fixed, the layout is unambiguous. A call the function's signature rejects (a parameter
given twice, a required one left out, an unexpected keyword or one positional argument too
many) is refused with a ``TypeError``, as calling the function would be, instead of being
keyed: with ignored arguments left out, it could get a valid call's key and cached result.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable
from typing import Any

from klepto._canonical import Tag
from klepto._inspect import NULL

__all__ = ["KWDS", "MISSING", "Plan", "plan_call"]


#: Separates named values from extra keyword arguments in a key.
KWDS = Tag("KWDS", __name__)
#: Stands for a required argument the call did not pass (such a call is refused).
MISSING = Tag("MISSING", __name__)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Plan:
    """``plan(args, kwds) -> key`` for one function.

    ``fast_arity`` is ``n`` when a call with no keywords and exactly ``n`` positional
    arguments has ``args`` itself as its key, else ``-1``; the memoizer inlines that case.
    """

    def __init__(
        self,
        params: list[inspect.Parameter],
        ignored: set[Any],
        keep_surplus: bool = True,
        keep_extras: bool = True,
        name: str = "function",
    ) -> None:
        self.name = name
        positional = [p for p in params if p.kind in _POSITIONAL]
        self.nparams = len(positional)
        self._defaults = [MISSING if p.default is p.empty else p.default for p in positional]
        self._positions = {
            p.name: i for i, p in enumerate(positional) if p.kind is not p.POSITIONAL_ONLY
        }
        kept = [i for i, p in enumerate(positional) if p.name not in ignored and i not in ignored]
        self._kept = None if len(kept) == self.nparams else tuple(kept)
        self._surplus_ignored = frozenset(
            i
            for i in ignored
            if isinstance(i, numbers.Integral) and i >= self.nparams  # type: ignore[operator]
        )
        kwonly = [p for p in params if p.kind is p.KEYWORD_ONLY]
        self._kwonly = {p.name: (MISSING if p.default is p.empty else p.default) for p in kwonly}
        self._varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        self._varkw = any(p.kind is p.VAR_KEYWORD for p in params)
        self._required = [(i, p.name) for i, p in enumerate(positional) if p.default is p.empty]
        self._required_kwonly = [p.name for p in kwonly if p.default is p.empty]
        self._kwonly_kept = tuple(p.name for p in kwonly if p.name not in ignored)
        self._ignored_names = frozenset(n for n in ignored if isinstance(n, str))
        self._keep_surplus = keep_surplus
        self._keep_extras = keep_extras
        # A call with no keywords and all positionals is valid and keyed by ``args`` only if
        # nothing is left out of the key and no keyword is required (even an ignored one).
        simple = self._kept is None and not self._kwonly_kept and not self._required_kwonly
        self.fast_arity = self.nparams if simple else -1
        # With no named parameters but ``*args``, any keyword-free call is keyed by its args.
        self._args_only = simple and self.nparams == 0 and self._varargs and keep_surplus
        self._args_only = self._args_only and not self._surplus_ignored
        self._by_keyword = _keyword_tails(positional, self._positions) if simple else {}

    def __call__(self, args: tuple[Any, ...], kwds: dict[Any, Any]) -> tuple[Any, ...]:
        if not kwds:
            if len(args) == self.fast_arity or self._args_only:
                return args
        else:
            # The remaining parameters all given by keyword: no binding needed.
            names = self._by_keyword.get(len(args))
            if names is not None and len(kwds) == len(names):
                try:
                    return args + tuple([kwds[name] for name in names])
                except KeyError:
                    pass  # some other keyword: bind properly
        return self._bind(args, kwds)

    def _bind(self, args: tuple[Any, ...], kwds: dict[Any, Any]) -> tuple[Any, ...]:
        nparams, nargs = self.nparams, len(args)
        values = list(self._defaults)
        values[: min(nargs, nparams)] = args[:nparams]
        kwonly = dict(self._kwonly)
        extras = {}
        for name, value in kwds.items():
            index = self._positions.get(name)
            if index is not None:
                if index < nargs:  # the call would fail: never answer it from the cache
                    raise TypeError(f"{self.name}() got multiple values for argument {name!r}")
                values[index] = value
            elif name in kwonly:
                kwonly[name] = value
            elif not self._varkw:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {name!r}")
            elif name not in self._ignored_names:
                extras[name] = value
        if nargs > nparams and not self._varargs:
            raise TypeError(
                f"{self.name}() takes {nparams} positional arguments but {nargs} were given"
            )
        self._check_required(values, kwonly)
        key = tuple(values) if self._kept is None else tuple(values[i] for i in self._kept)
        if self._keep_surplus:
            key += self._surplus(args)
        if self._kwonly_kept:
            key += tuple(kwonly[name] for name in self._kwonly_kept)
        if extras and self._keep_extras:
            key += (KWDS, *_flatten_sorted(extras))
        return key

    def _check_required(self, values: list[Any], kwonly: dict[Any, Any]) -> None:
        for index, name in self._required:
            if values[index] is MISSING:
                raise TypeError(f"{self.name}() missing required argument {name!r}")
        for name in self._required_kwonly:
            if kwonly[name] is MISSING:
                raise TypeError(f"{self.name}() missing required keyword argument {name!r}")

    def _surplus(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        surplus = args[self.nparams :]
        ignored = self._surplus_ignored
        if not ignored:
            return surplus
        return tuple(
            NULL if index in ignored else value for index, value in enumerate(surplus, self.nparams)
        )

    def __repr__(self) -> str:
        return f"<Plan nparams={self.nparams} fast_arity={self.fast_arity}>"


def _keyword_tails(positional: list[Any], positions: dict[Any, Any]) -> dict[int, tuple[str, ...]]:
    """For ``n`` positional args, the names the remaining parameters take as keywords."""
    tails = {}
    for nargs in range(len(positional)):
        names = tuple(p.name for p in positional[nargs:])
        if all(name in positions for name in names):
            tails[nargs] = names
    return tails


def _flatten_sorted(extras: dict[Any, Any]) -> list[Any]:
    flat: list[Any] = []
    for name in sorted(extras):
        flat += (name, extras[name])
    return flat


def _split_ignore(ignore: Any) -> tuple[set[Any], bool, bool]:
    if isinstance(ignore, (str, numbers.Integral)):
        ignore = (ignore,)
    ignored: set[Any] = set()
    keep_surplus = keep_extras = True
    for item in ignore or ():
        if item == "*":
            keep_surplus = False
        elif item == "**":
            keep_extras = False
        elif isinstance(item, (str, numbers.Integral)):
            ignored.add(item)
        else:
            raise TypeError(f"ignore takes parameter names and positions, not {item!r}")
    return ignored, keep_surplus, keep_extras


def parameters(func: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """The parameters of ``func`` (partials and bound methods resolved), or None if unknown."""
    try:
        return list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # builtins and C callables without a signature
        return None


def plan_call(func: Callable[..., Any], ignore: Iterable[Any] | str | int = ()) -> Plan:
    """The binding plan for calls of ``func``, leaving the ``ignore``-d parameters out.

    ``ignore`` holds parameter names and positions, ``'*'`` (drop surplus positional
    arguments) and ``'**'`` (drop extra keyword arguments).
    """
    ignored, keep_surplus, keep_extras = _split_ignore(ignore)
    params = parameters(func)
    if params is None:  # unknown signature: key the raw call, positionals then keywords
        params = [
            inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
            inspect.Parameter("kwds", inspect.Parameter.VAR_KEYWORD),
        ]
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", "function")
    return Plan(params, ignored, keep_surplus, keep_extras, name=str(name))
