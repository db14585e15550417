"""Call-signature inspection and call normalisation for cache keys.

``_keygen`` turns a call ``func(*args, **kwds)`` into a canonical ``(args, kwds)`` pair in which
every named parameter sits in ``kwds`` (with the function's defaults filled in) and only surplus
varargs remain in ``args``; ignored parameters are replaced by ``NULL``. ``signature``,
``validate`` and ``isvalid`` answer questions about a call without making it. All of them
understand ``functools.partial`` objects, bound methods, classes and callable instances.

Signature information is read from the function's code object and cached per function, so the
per-call cost of ``_keygen`` is a few dictionary operations.
"""

from __future__ import annotations

import functools
import numbers
import weakref
from collections.abc import Callable, Iterable
from inspect import CO_VARARGS, CO_VARKEYWORDS
from types import FunctionType, MethodType
from typing import Any, NamedTuple

from klepto.rounding import deep_round_factory, simple_round_factory

__all__ = ["NULL", "_keygen", "isvalid", "keygen", "signature", "strip_markup", "validate"]


class _Null:
    """Type of ``NULL``, the stand-in for an ignored argument inside a key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL"

    def __hash__(self) -> int:
        # A fixed hash keeps keys containing NULL stable across processes (ints are not salted).
        return 0x4E554C4C

    def __reduce__(self) -> str:
        return "NULL"  # pickles as a reference to the module singleton

    def __copy__(self) -> _Null:
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> _Null:
        return self


NULL = _Null()

_NOT_PYTHON = "is not a Python function"


class _NotInspectable(TypeError):
    """Raised internally when a callable has no usable Python signature."""


class _FunctionSpec(NamedTuple):
    """What a real call binds against, read once from a function's code object."""

    name: str  # qualified name, as Python's own call errors use it
    names: tuple[str, ...]  # positional-or-keyword parameters, positional-only ones first
    positional_only: int  # how many of ``names`` are positional-only
    defaults: dict[str, Any]  # positional defaults in order, then keyword-only defaults
    varargs: str
    varkw: str
    keyword_only: tuple[str, ...]


class _Resolved(NamedTuple):
    """A callable reduced to a Python function plus what is already bound to it."""

    spec: _FunctionSpec
    bound: bool  # the first positional parameter is taken (method self, class instance)
    fixed_args: tuple[Any, ...]  # positionals supplied by partials, innermost first
    fixed_kwds: dict[str, Any]  # keywords supplied by partials, outer ones winning


# id(function) -> (weak reference, code, defaults, kwdefaults, spec). Keyed by id rather than
# by a WeakKeyDictionary because this lookup runs on every memoized call.
_SPEC_CACHE: dict[int, tuple[Any, ...]] = {}


def _build_spec(function: FunctionType) -> _FunctionSpec:
    code = function.__code__
    npositional, nkeyword_only = code.co_argcount, code.co_kwonlyargcount
    names = code.co_varnames[:npositional]
    keyword_only = code.co_varnames[npositional : npositional + nkeyword_only]
    index = npositional + nkeyword_only
    varargs = varkw = ""
    if code.co_flags & CO_VARARGS:
        varargs = code.co_varnames[index]
        index += 1
    if code.co_flags & CO_VARKEYWORDS:
        varkw = code.co_varnames[index]
    positional_defaults = function.__defaults__ or ()
    defaults = dict(zip(names[npositional - len(positional_defaults) :], positional_defaults))
    keyword_defaults = function.__kwdefaults__ or {}
    defaults.update(
        (name, keyword_defaults[name]) for name in keyword_only if name in keyword_defaults
    )
    name = getattr(function, "__qualname__", function.__name__)
    return _FunctionSpec(
        name, names, code.co_posonlyargcount, defaults, varargs, varkw, keyword_only
    )


def _function_spec(function: FunctionType) -> _FunctionSpec:
    """Return the cached spec of a Python function, rebuilt if its code or defaults changed."""
    entry = _SPEC_CACHE.get(id(function))
    if (
        entry is not None
        and entry[0]() is function
        and entry[1] is function.__code__
        and entry[2] is function.__defaults__
        and entry[3] is function.__kwdefaults__
    ):
        return entry[4]  # type: ignore[no-any-return]
    spec = _build_spec(function)
    key = id(function)

    def forget(reference: weakref.ref[Any]) -> None:
        if _SPEC_CACHE.get(key, (None,))[0] is reference:
            del _SPEC_CACHE[key]

    reference = weakref.ref(function, forget)
    entry = (reference, function.__code__, function.__defaults__, function.__kwdefaults__, spec)
    _SPEC_CACHE[key] = entry
    return spec


def _base_function(target: Any) -> tuple[FunctionType, bool] | None:
    """Return ``(python_function, bound)`` behind a non-partial callable, or None."""
    if isinstance(target, FunctionType):
        return target, False
    if isinstance(target, type):
        initializer = target.__init__  # type: ignore[misc]
        return (initializer, True) if isinstance(initializer, FunctionType) else None
    if not isinstance(target, MethodType):
        if not callable(target):
            return None
        target = target.__call__  # a callable instance is inspected through its __call__
        if isinstance(target, FunctionType):  # a staticmethod __call__ takes no self
            return target, False
    if isinstance(target, MethodType) and isinstance(target.__func__, FunctionType):
        return target.__func__, True
    return None


def _resolve(func: Any) -> _Resolved:
    """Reduce ``func`` to its Python function; raise ``_NotInspectable`` for builtins etc."""
    layers = []
    target = func
    while isinstance(target, functools.partial):
        layers.append(target)
        target = target.func
    base = _base_function(target)
    if base is None:
        raise _NotInspectable(f"{func!r} {_NOT_PYTHON}")
    fixed_args: tuple[Any, ...] = ()
    fixed_kwds: dict[str, Any] = {}
    for layer in reversed(layers):  # partial(partial(f, 1), 2) calls f(1, 2)
        fixed_args += layer.args
        fixed_kwds.update(layer.keywords)
    function, bound = base
    return _Resolved(_function_spec(function), bound, fixed_args, fixed_kwds)


def _free_names(resolved: _Resolved) -> tuple[str, ...]:
    names = resolved.spec.names
    return names[1:] if resolved.bound and names else names


def _apply_partial(resolved: _Resolved, markup: bool) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Return ``(names, defaults)`` of a resolved callable, partial arguments applied."""
    names = _free_names(resolved)
    defaults = dict(resolved.spec.defaults)
    fixed_args, fixed_kwds = resolved.fixed_args, resolved.fixed_kwds
    if not fixed_args and not fixed_kwds:
        return names, defaults
    fixed_names = names[: len(fixed_args)]
    for name in fixed_kwds:
        if name in fixed_names:
            raise _NotInspectable(
                f"{resolved.spec.name}() got multiple values for keyword argument '{name}'"
            )
    defaults.update(fixed_kwds)
    names = names[len(fixed_args) :]
    if markup:
        for name, value in zip(fixed_names, fixed_args):
            defaults.pop(name, None)
            defaults["!" + name] = value
        names = tuple("!" + name if name in fixed_kwds else name for name in names)
    return names, defaults


def signature(
    func: Callable[..., Any], variadic: bool = True, markup: bool = True, safe: bool = False
) -> tuple[Any, ...]:
    """Return ``(names, defaults, varargs, varkw)`` of ``func`` (``(names, defaults)`` if not
    ``variadic``).

    ``names`` are the positional-or-keyword parameters still free, ``defaults`` maps names to
    defaults (keyword-only ones included), absent varargs/varkw names are ``''``. For partials,
    with ``markup`` fixed positionals appear in ``defaults`` as ``'!name'`` and names set by
    partial keywords appear in ``names`` as ``'!name'``. Builtins and partials that fix a
    parameter twice raise ``TypeError``, or give a tuple of ``None`` when ``safe``.
    """
    try:
        resolved = _resolve(func)
        names, defaults = _apply_partial(resolved, markup)
    except _NotInspectable as error:
        if safe:
            return (None,) * (4 if variadic else 2)
        raise TypeError(str(error)) from None
    if not variadic:
        return names, defaults
    return names, defaults, resolved.spec.varargs, resolved.spec.varkw


def strip_markup(names: Iterable[str] | None, defaults: dict[Any, Any] | None) -> tuple[Any, ...]:
    """Remove the ``'!'`` markup of ``signature``: unmark names, drop ``'!'`` defaults."""
    if names is not None:
        names = tuple(name.lstrip("!") for name in names)
    if defaults is not None:
        defaults = {key: value for key, value in defaults.items() if not key.startswith("!")}
    return names, defaults


def _check_keywords(spec: _FunctionSpec, nargs: int, kwds: dict[str, Any]) -> None:
    for key in kwds:
        if key in spec.names:
            index = spec.names.index(key)
            if index < spec.positional_only:
                if spec.varkw:
                    continue  # collected by **kwargs, the parameter itself stays unset
                raise TypeError(
                    f"{spec.name}() got some positional-only arguments passed as keyword "
                    f"arguments: '{key}'"
                )
            if index < nargs:
                raise TypeError(f"{spec.name}() got multiple values for keyword argument '{key}'")
        elif key not in spec.keyword_only and not spec.varkw:
            raise TypeError(f"{spec.name}() got an unexpected keyword argument '{key}'")


def _check_arity(spec: _FunctionSpec, nargs: int, kwds: dict[str, Any]) -> None:
    given = nargs + len(kwds)
    if nargs > len(spec.names) and not spec.varargs:
        raise TypeError(f"{spec.name}() takes at most {len(spec.names)} arguments ({given} given)")
    for index, name in enumerate(spec.names[nargs:], start=nargs):
        by_keyword = name in kwds and index >= spec.positional_only
        if not by_keyword and name not in spec.defaults:
            required = sum(1 for each in spec.names if each not in spec.defaults)
            raise TypeError(f"{spec.name}() takes at least {required} arguments ({given} given)")
    for name in spec.keyword_only:
        if name not in kwds and name not in spec.defaults:
            raise TypeError(f"{spec.name}() missing required keyword-only argument '{name}'")


def validate(func: Callable[..., Any], /, *args: Any, **kwds: Any) -> None:
    """Raise ``TypeError`` if ``func(*args, **kwds)`` would fail to bind; never calls ``func``.

    The checks mirror Python's own (unexpected keyword, multiple values, too many or too few
    arguments) and see through partials, bound methods, classes and callable instances.
    Builtins raise ``TypeError('<func> is not a Python function')``.
    """
    try:
        resolved = _resolve(func)
    except _NotInspectable as error:
        raise TypeError(str(error)) from None
    nargs = int(resolved.bound) + len(resolved.fixed_args) + len(args)
    merged = {**resolved.fixed_kwds, **kwds}  # what functools.partial passes on
    _check_keywords(resolved.spec, nargs, merged)
    _check_arity(resolved.spec, nargs, merged)


def isvalid(func: Callable[..., Any], /, *args: Any, **kwds: Any) -> bool:
    """Return True if the call would bind.

    For builtins, which cannot be inspected, the call is actually made and any exception
    counts as invalid.
    """
    try:
        validate(func, *args, **kwds)
    except TypeError as error:
        if not str(error).endswith(_NOT_PYTHON):
            return False
        try:
            func(*args, **kwds)
        except Exception:  # the call *is* the test: any failure means invalid
            return False
    return True


class _Mask(NamedTuple):
    """An ``ignore`` specification split into its kinds."""

    names: frozenset[Any]
    positions: frozenset[Any]
    star: bool  # '*': drop surplus varargs
    double_star: bool  # '**': drop keywords that are not parameters


def _build_mask(ignored: Any) -> _Mask | None:
    if isinstance(ignored, (str, numbers.Integral)):
        ignored = (ignored,)
    names, positions = set(), set()
    for item in ignored:
        if isinstance(item, numbers.Integral):
            positions.add(int(item))
        else:
            names.add(item)
    if not names and not positions:
        return None
    return _Mask(frozenset(names), frozenset(positions), "*" in names, "**" in names)


_cached_mask = functools.lru_cache(maxsize=256, typed=True)(_build_mask)


def _ignore_mask(ignored: Any) -> _Mask | None:
    if ignored is None or (type(ignored) is tuple and not ignored):  # the common case
        return None
    if type(ignored) is list:
        ignored = tuple(ignored)
    try:
        return _cached_mask(ignored)
    except TypeError:  # unhashable: build it every time
        return _build_mask(ignored)


def _key_signature(func: Any) -> tuple[tuple[str, ...], dict[str, Any], tuple[str, ...]] | None:
    """Return ``(names, defaults, keyword_only)`` as ``_keygen`` needs them, or None."""
    kind = type(func)
    if kind is FunctionType:  # the common case: no partial, no binding
        spec = _function_spec(func)
        return spec.names, spec.defaults, spec.keyword_only
    if kind is MethodType and type(func.__func__) is FunctionType:
        spec = _function_spec(func.__func__)
        return spec.names[1:] if spec.names else (), spec.defaults, spec.keyword_only
    if not isinstance(func, functools.partial) and _base_function(func) is None:
        return None  # a builtin: answered without raising, as this runs on every call
    try:
        resolved = _resolve(func)
        names, defaults = _apply_partial(resolved, markup=False)
    except _NotInspectable:
        return None
    return names, defaults, resolved.spec.keyword_only


def _is_method_call(func: Any, args: tuple[Any, ...]) -> bool:
    """True if ``args[0]`` is an instance whose attribute ``func.__name__`` is bound to it."""
    if type(func) is not FunctionType or not args:
        return False
    attribute = getattr(args[0], func.__name__, None)
    return getattr(attribute, "__self__", None) is args[0]


def _masked_names(mask: _Mask, names: tuple[str, ...]) -> tuple[set[Any], set[Any]]:
    """Cross-reference ignored names and positions over the parameter list."""
    ignored_names, positions = set(mask.names), set(mask.positions)
    for index, name in enumerate(names):
        if index in positions:
            ignored_names.add(name)
        elif name in ignored_names:
            positions.add(index)
    return ignored_names, positions


def _masked_key(
    func: Any, mask: _Mask, signature_: tuple[Any, ...], args: tuple[Any, ...], kwds: dict[Any, Any]
) -> tuple[tuple[Any, ...], dict[Any, Any]]:
    """The ``_keygen`` algorithm when some arguments are ignored."""
    names, defaults, keyword_only = signature_
    out = {**defaults, **kwds}
    if names and names[0] in mask.names and _is_method_call(func, args):
        # An ignored ``self`` is removed, not NULLed, so instances share results.
        out.pop(names[0], None)
        names, args = names[1:], args[1:]
    ignored_names, positions = _masked_names(mask, names)
    if positions:
        args = tuple(NULL if index in positions else arg for index, arg in enumerate(args))
    if mask.star:
        args = args[: len(names)]
    for name in ignored_names:
        if name in out:
            out[name] = NULL  # in place: the key order is unchanged
    if mask.double_star:
        for name in kwds:
            if name not in names and name not in keyword_only:
                out.pop(name, None)
    nargs = len(args)
    for index, name in enumerate(names):
        if index < nargs:
            out[name] = args[index]
        elif name in ignored_names and name not in out:
            out[name] = NULL  # an ignored parameter the caller left out still shows as NULL
    return args[len(names) :], out


def _keygen(
    func: Callable[..., Any], ignored: Any, /, *args: Any, **kwds: Any
) -> tuple[tuple[Any, ...], dict[Any, Any]]:
    """Normalise a call to ``(surplus_args, kwds)``; never calls ``func``.

    ``kwds`` holds, in order: the defaults (positional, keyword-only, then partial keywords),
    the caller's keywords in call order, then the positional parameters not yet present in
    parameter order. Positional values win over keywords of the same name. ``ignored`` (a
    name, a position, or a collection of them, plus ``'*'``/``'**'``) replaces arguments by
    ``NULL``; an ignored ``self`` of a method call is dropped. Builtins come back unchanged
    (and unmasked).
    """
    if type(func) is FunctionType:  # inlined fast path of _key_signature
        spec = _function_spec(func)
        signature_ = spec.names, spec.defaults, spec.keyword_only
    else:
        found = _key_signature(func)
        if found is None:
            return args, dict(kwds)
        signature_ = found
    mask = _ignore_mask(ignored)
    if mask is not None:
        return _masked_key(func, mask, signature_, args, kwds)
    names = signature_[0]
    out = {**signature_[1], **kwds}
    out.update(zip(names, args))
    return args[len(names) :], out


def _as_keymap(mapper: Any) -> Any:
    from klepto.keymaps import keymap  # keymaps build on this module, not the other way

    if isinstance(mapper, type):
        mapper = mapper()
    if not isinstance(mapper, keymap):
        raise TypeError(f"'{mapper}' is not a klepto keymap instance")
    return mapper


def _default_keymap() -> Any:
    from klepto.keymaps import keymap

    return keymap()


def keygen(*ignored: Any, **kwds: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator factory: the decorated function returns the cache key of a call, not its result.

    ``ignored`` are parameter names/positions (and ``'*'``, ``'**'``) replaced by ``NULL``;
    kwds: ``keymap`` (default raw ``keymap()``), ``tol`` and ``deep`` (argument rounding for the
    key). The returned function records the last call; ``call()`` makes it for real with the
    original arguments, ``valid()`` checks it, ``key()`` recomputes its key, ``keymap()`` and
    ``register(mapper)`` read and replace the keymap.
    """
    mapper = kwds.get("keymap")
    rounder = (deep_round_factory if kwds.get("deep", False) else simple_round_factory)(
        kwds.get("tol")
    )

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        state: dict[str, Any] = {"args": (), "kwds": {}}
        state["keymap"] = _default_keymap() if mapper is None else mapper

        def key_of(args: tuple[Any, ...], kwds: dict[Any, Any]) -> Any:
            args, kwds = rounder(*args, **kwds)
            args, kwds = _keygen(f, ignored, *args, **kwds)
            return state["keymap"](*args, **kwds)

        def keyed(*args: Any, **kwds: Any) -> Any:
            state["args"], state["kwds"] = args, kwds
            return key_of(args, kwds)

        def register(new_mapper: Any) -> None:
            state["keymap"] = _as_keymap(new_mapper)

        keyed.__ignored__ = ignored  # type: ignore[attr-defined]
        keyed.__func__ = f  # type: ignore[attr-defined]
        keyed.__args__ = lambda: (state["args"], state["kwds"])  # type: ignore[attr-defined]
        keyed.call = lambda: f(*state["args"], **state["kwds"])  # type: ignore[attr-defined]
        keyed.valid = lambda: isvalid(f, *state["args"], **state["kwds"])  # type: ignore[attr-defined]
        keyed.key = lambda: key_of(state["args"], state["kwds"])  # type: ignore[attr-defined]
        keyed.keymap = lambda: state["keymap"]  # type: ignore[attr-defined]
        keyed.register = register  # type: ignore[attr-defined]
        return keyed

    return decorate
