"""The raw keymap: a call's ``(*args, **kwds)`` as a tuple key, plus the sentinels.

Subclasses (``hashmap``, ``stringmap``, ``picklemap``) build the same base key and then
transform it (hash, stringify, serialize) in ``_transform``. Keymaps chain with ``+``:
``(a + b)(x)`` formats the call with ``b``'s settings, hands that key to ``a`` as a single
argument, and applies ``b``'s transform to ``a``'s result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from klepto._inspect import _keygen

__all__ = ["NOSENTINEL", "SENTINEL", "keymap"]


class _Marker:
    """A module-level singleton that pickles by reference and copies as itself."""

    __slots__ = ()
    _name = ""
    _hash = 0

    def __repr__(self) -> str:
        return f"<{self._name}>"

    def __hash__(self) -> int:
        return self._hash  # fixed, so hashed keys holding a marker are stable across processes

    def __reduce__(self) -> str:
        return self._name

    def __copy__(self) -> _Marker:
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> _Marker:
        return self


class _Sentinel(_Marker):
    """Type of ``SENTINEL``, a separator between the parts of a flat key."""

    __slots__ = ()
    _name = "SENTINEL"
    _hash = 0x53454E54


class _NoSentinel(_Marker):
    """Type of ``NOSENTINEL``, which means "no separator"."""

    __slots__ = ()
    _name = "NOSENTINEL"
    _hash = 0x4E4F5345


SENTINEL = _Sentinel()
NOSENTINEL = _NoSentinel()

_FAST_TYPES = frozenset({int, str, bytes, frozenset, type(None)})


class keymap:
    """Turn ``(*args, **kwds)`` into a raw (unserialized) key.

    ``flat=True`` gives ``(*args, [sentinel,] k1, v1, k2, v2, ...)`` with keywords sorted by
    name (a single argument of a fast type is the key itself); ``flat=False`` gives
    ``(args, kwds)``. ``typed=True`` appends the argument types. Special kwds ``fasttypes``,
    ``sorted``, ``tuple``, ``type`` and ``len`` replace the builtins used; any other kwds are
    kept in ``_config`` for the subclass's encoder.
    """

    # Pickles (stdlib and dill) refer to the public path, whatever the file layout.
    __module__ = "klepto.keymaps"
    __stub__ = ""

    def __init__(
        self, typed: bool = False, flat: bool = True, sentinel: Any = NOSENTINEL, **kwds: Any
    ) -> None:
        self._fasttypes = kwds.pop("fasttypes", _FAST_TYPES)
        self._sorted: Callable[..., Any] = kwds.pop("sorted", sorted)
        self._tuple: Callable[..., Any] = kwds.pop("tuple", tuple)
        self._type: Callable[..., Any] = kwds.pop("type", type)
        self._len: Callable[..., Any] = kwds.pop("len", len)
        self._config = kwds
        self.typed = typed
        self.flat = flat
        self.sentinel = sentinel
        self.__inner__: keymap | None = None
        self.__outer__: keymap | None = None

    # ``self`` is positional-only so that a call's own keyword named ``self`` (or ``cls``)
    # becomes part of the key instead of colliding with the bound instance (issue 84).
    def __call__(self, /, *args: Any, **kwds: Any) -> Any:
        if self.flat:
            return self.encode(*args, **kwds)
        return self.encrypt(*args, **kwds)

    @property
    def sentinel(self) -> Any:
        """The separator placed between args, keywords and types (``NOSENTINEL``: none)."""
        return NOSENTINEL if self._mark is None else self._mark[0]

    @sentinel.setter
    def sentinel(self, value: Any) -> None:
        self._mark = None if value is NOSENTINEL else (value,)

    @property
    def inner(self) -> keymap | None:
        """The left operand of ``+`` (applied first), or None when not chained."""
        return self.__inner__

    @inner.setter
    def inner(self, value: Any) -> None:
        raise NotImplementedError("Combine keymaps with '+'")

    @property
    def outer(self) -> keymap | None:
        """The right operand of ``+`` (whose settings this keymap has), or None."""
        return self.__outer__

    @outer.setter
    def outer(self, value: Any) -> None:
        raise NotImplementedError("Combine keymaps with '+'")

    def _flat_key(self, args: tuple[Any, ...], kwds: dict[Any, Any]) -> Any:
        if kwds or self.typed:
            key = self._tuple(self._flat_parts(args, kwds))
        else:  # the common case: the positional args are the key
            key = args if self._tuple is tuple else self._tuple(args)
        if not self.typed and self._len(key) == 1 and self._type(key[0]) in self._fasttypes:
            return key[0]
        return key

    def _flat_parts(self, args: tuple[Any, ...], kwds: dict[Any, Any]) -> list[Any]:
        parts = list(args)
        mark = list(self._mark or ())
        items = self._sorted(kwds.items()) if kwds else ()
        if kwds:
            parts += mark
            for name, value in items:
                parts += (name, value)
        if self.typed:
            parts += mark
            parts += (self._type(arg) for arg in args)
            if kwds:
                parts += mark
                parts += (self._type(value) for _, value in items)
        return parts

    def _nested_key(self, args: tuple[Any, ...], kwds: dict[Any, Any]) -> tuple[Any, ...]:
        key: tuple[Any, ...] = (args, kwds)
        if self.typed:
            items = self._sorted(kwds.items())
            arg_types = self._tuple(self._type(arg) for arg in args)
            key += (arg_types, self._tuple(self._type(value) for _, value in items))
        return key

    def _transform(self, key: Any) -> Any:
        """Subclass hook turning a base key into the final key (identity here)."""
        return key

    def _finish(self, key: Any) -> Any:
        if self.__outer__ is not None:
            key = self.__inner__(key)  # type: ignore[misc]  # chained: both are set
        return self._transform(key)

    def encode(self, /, *args: Any, **kwds: Any) -> Any:
        """Return the flat key of a call."""
        return self._finish(self._flat_key(args, kwds))

    def encrypt(self, /, *args: Any, **kwds: Any) -> Any:
        """Return the non-flat key of a call: ``(args, kwds[, arg_types, kwd_types])``."""
        return self._finish(self._nested_key(args, kwds))

    def decode(self, key: Any) -> Any:
        """Not supported: keys are not decodable."""
        raise NotImplementedError("Key decoding is not implemented")

    def decrypt(self, key: Any) -> Any:
        """Not supported: keys are not decryptable."""
        raise NotImplementedError("Key decryption is not implemented")

    def dumps(self, obj: Any, /, **kwds: Any) -> Any:
        """Return ``encode(obj, **kwds)``."""
        return self.encode(obj, **kwds)

    def loads(self, key: Any) -> Any:
        """Return ``decode(key)`` (always raises NotImplementedError)."""
        return self.decode(key)

    def plan(
        self,
        func: Callable[..., Any],
        ignore: Any,
        rounder: Callable[..., tuple[tuple[Any, ...], dict[Any, Any]]] | None = None,
    ) -> Callable[[tuple[Any, ...], dict[Any, Any]], Any]:
        """Return ``key_of(args, kwds)`` computing the key of ``func(*args, **kwds)``.

        A memoizer calls this once per decorated function; the returned callable is the
        classic per-call algorithm: round the arguments with ``rounder`` (a
        ``rounder(*args, **kwds) -> (args, kwds)``, or None for no rounding), normalise them
        with ``_keygen(func, ignore, ...)``, then apply this keymap. Subclasses may override it
        with a precomputed fast path that returns the same keys.
        """
        if rounder is None:

            def key_of(args: tuple[Any, ...], kwds: dict[Any, Any]) -> Any:
                args, kwds = _keygen(func, ignore, *args, **kwds)
                return self(*args, **kwds)

        else:

            def key_of(args: tuple[Any, ...], kwds: dict[Any, Any]) -> Any:
                args, kwds = rounder(*args, **kwds)
                args, kwds = _keygen(func, ignore, *args, **kwds)
                return self(*args, **kwds)

        return key_of

    def _clone(self) -> keymap:
        clone = copy.copy(self)
        clone._config = dict(self._config)
        return clone

    def __add__(self, other: Any) -> keymap:
        if not isinstance(other, keymap):
            raise TypeError(
                f"can't concatenate '{type(self).__name__}' and '{type(other).__name__}' objects"
            )
        combined = other._clone()
        # A chained right operand keeps its own chain: a + (b + c) == (a + b) + c.
        combined.__inner__ = self._clone() if other.__inner__ is None else self + other.__inner__
        combined.__outer__ = other._clone()
        return combined

    def __repr__(self) -> str:
        settings = []
        # Compared by value, as classic keymaps did: typed=0 and flat=1 are defaults too.
        if self.typed != False:  # noqa: E712
            settings.append(f"typed={self.typed}")
        if self.flat != True:  # noqa: E712
            settings.append(f"flat={self.flat}")
        if self._mark is not None:
            settings.append(f"sentinel={self._mark[0]!r}")
        kind = getattr(self, "__type__", None)
        if kind is not None:
            settings.append(f"{self.__stub__}='{kind}'")
        chained = "*" if self.__outer__ is not None else ""
        return f"{type(self).__name__}({', '.join(settings)}){chained}"
