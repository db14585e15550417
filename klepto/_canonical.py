"""Canonical keys: hashable forms of unhashable arguments, and process-stable key bytes.

Two jobs, both about keys and both independent of ``PYTHONHASHSEED``:

* :func:`freeze` turns an unhashable argument (list, dict, set, numpy array, dataclass) into a
  hashable tuple headed by a :class:`Tag`, whose equality mirrors the original's, so
  memoization works for any argument that can be compared.
* :func:`stable_bytes` encodes a key into bytes that are identical in every process and on
  every machine; :func:`stable_hash` is a short digest of them. Archives locate entries by
  these, never by the salted builtin ``hash``. Values equal in Python encode equally where
  the numeric tower allows it (``3``, ``3.0`` and ``True == 1`` share a key, as in memory).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import math
import operator
import struct
import types
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["DICT", "LIST", "NDARRAY", "OBJECT", "Tag", "freeze", "stable_bytes", "stable_hash"]

# Arrays up to this size are frozen with their bytes; larger ones with a 256-bit digest.
_INLINE_ARRAY_BYTES = 4096


class Tag:
    """A named module-level singleton used inside keys.

    It equals only itself, pickles by reference (as the global ``module.name``) and encodes
    by name in :func:`stable_bytes`, so keys holding it are the same in every process. The
    tags below head frozen forms: ``(LIST, 1, 2)`` stands for ``[1, 2]`` and never equals a
    user's tuple; frozen forms are plain tuples, so hashing and comparing them runs at C
    speed. Other modules define their own tags (``klepto._binding.KWDS``).
    """

    def __init__(self, name: str, module: str = __name__) -> None:
        self.name = name
        # pickle finds a global through the object's __module__: the defining module's.
        self.__module__ = module

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name


LIST = Tag("LIST")
DICT = Tag("DICT")
NDARRAY = Tag("NDARRAY")
OBJECT = Tag("OBJECT")
TAGS = {tag.name: tag for tag in (LIST, DICT, NDARRAY, OBJECT)}

# Values of these types are hashable and their own frozen form.
_ATOMIC = frozenset({int, str, float, bytes, bool, type(None), complex})


def freeze(value: Any) -> Any:
    """A hashable value equal (as a key) to ``value``; hashable values are returned as is.

    Lists become ``(LIST, *items)``, dicts ``(DICT, frozenset(items))``, sets frozensets,
    numpy arrays ``(NDARRAY, dtype, shape, data)``, dataclasses ``(OBJECT, name, *fields)``.
    Raises ``TypeError`` naming the type when no faithful hashable form exists.
    """
    kind = type(value)
    if kind in _ATOMIC:
        return value
    freezer = _FREEZERS.get(kind)
    if freezer is not None:
        return freezer(value)
    try:
        hash(value)
    except TypeError:
        return _freeze_other(value)
    return value


def freeze_items(values: Any) -> list[Any]:
    """``[freeze(v) for v in values]``, with atomic values and lists of them inline.

    This is the memoizer's path for every call with list arguments, so it avoids a Python
    call per item where it can.
    """
    atomic = _ATOMIC
    out = []
    for value in values:
        kind = type(value)
        if kind in atomic:
            out.append(value)
        elif kind is list:
            frozen = [LIST]
            for item in value:
                frozen.append(item if type(item) in atomic else freeze(item))
            out.append(tuple(frozen))
        else:
            out.append(freeze(value))
    return out


def _freeze_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    frozen = freeze_items(value)
    # A hashable tuple is its own frozen form: keep it (callers test freezing by identity).
    return value if all(map(operator.is_, frozen, value)) else tuple(frozen)


def _freeze_list(value: list[Any]) -> tuple[Any, ...]:
    atomic = _ATOMIC
    out = [LIST]
    for item in value:
        out.append(item if type(item) in atomic else freeze(item))
    return tuple(out)


def _freeze_dict(value: dict[Any, Any]) -> tuple[Any, ...]:
    return (DICT, frozenset(zip(freeze_items(value), freeze_items(value.values()))))


def _freeze_set(value: Any) -> frozenset[Any]:
    return frozenset(freeze_items(value))


def _freeze_frozenset(value: frozenset[Any]) -> frozenset[Any]:
    frozen = freeze_items(value)
    return value if all(map(operator.is_, frozen, value)) else frozenset(frozen)


_FREEZERS: dict[type, Callable[[Any], Any]] = {
    tuple: _freeze_tuple,
    list: _freeze_list,
    dict: _freeze_dict,
    set: _freeze_set,
    frozenset: _freeze_frozenset,
    bytearray: bytes,
}


def _freeze_other(value: Any) -> Any:
    """Subclasses of the built-in containers, numpy arrays and dataclasses."""
    kind = type(value)
    containers: tuple[tuple[type, Callable[[Any], Any]], ...] = (
        (list, _freeze_list),
        (dict, _freeze_dict),
        (tuple, _freeze_tuple),
    )
    for base, freezer in containers:
        if isinstance(value, base):
            return freezer(value)
    if isinstance(value, (set, frozenset)):
        return _freeze_set(value)
    if _is_ndarray(value):
        return _freeze_array(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _freeze_dataclass(value)
    raise TypeError(
        f"cannot use an unhashable {kind.__qualname__} as (part of) a cache key; "
        "pass a hashable value, a list/dict/set/array/dataclass, or choose a keymap"
    )


def _dataclass_fields(value: Any, convert: Callable[[Any], Any]) -> tuple[Any, ...]:
    return tuple(
        (f.name, convert(getattr(value, f.name))) for f in dataclasses.fields(value) if f.compare
    )


def _is_ndarray(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ == "ndarray"


def _freeze_array(array: Any) -> tuple[Any, ...]:
    if array.dtype.hasobject:
        raise TypeError("cannot use a numpy array of Python objects as a cache key")
    contiguous = array.tobytes(order="C")
    if len(contiguous) > _INLINE_ARRAY_BYTES:
        contiguous = hashlib.blake2b(contiguous, digest_size=32).digest()
    return (NDARRAY, array.dtype.str, tuple(array.shape), contiguous)


def _qualified_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


# --- stable bytes ---------------------------------------------------------------------------

_INT = struct.Struct(">I")


def stable_bytes(key: Any) -> bytes:
    """Encode ``key`` into bytes that are the same in every process (no salted ``hash``).

    Raises ``TypeError`` naming the type when a part of the key has no stable encoding.
    """
    if type(key) is str:  # the commonest archive key: _encode_text's bytes, without dispatch
        data = key.encode("utf-8", "surrogatepass")
        return b"s" + _INT.pack(len(data)) + data
    if type(key) is tuple:  # the memoizer's key of positional arguments
        flat = _flat_tuple_bytes(key)
        if flat is not None:
            return flat
    out = bytearray()
    _encode(key, out)
    return bytes(out)


def _flat_tuple_bytes(key: tuple[Any, ...]) -> bytes | None:
    """``_encode_sequence``'s bytes for a tuple of ints and strs, without a dispatch per
    item (a memoized call's key is mostly that); None for any other tuple."""
    parts = [b"(", _INT.pack(len(key))]
    for item in key:
        kind = type(item)
        if kind is int:
            data = str(item).encode("ascii")
            parts += (b"i", _INT.pack(len(data)), data)
        elif kind is str:
            data = item.encode("utf-8", "surrogatepass")
            parts += (b"s", _INT.pack(len(data)), data)
        else:
            return None
    return b"".join(parts)


def stable_hash(key: Any, size: int = 16) -> str:
    """Hex digest (blake2b, ``size`` bytes) of :func:`stable_bytes` of ``key``."""
    return hashlib.blake2b(stable_bytes(key), digest_size=size).hexdigest()


def _chunk(tag: bytes, data: bytes, out: bytearray) -> None:
    out += tag
    out += _INT.pack(len(data))
    out += data


def _encode_int(value: int, out: bytearray) -> None:
    _chunk(b"i", str(value).encode("ascii"), out)


def _encode_float(value: float, out: bytearray) -> None:
    if math.isfinite(value) and value.is_integer():
        _encode_int(int(value), out)  # 3.0 == 3: one key, as in memory
    else:
        _chunk(b"f", value.hex().encode("ascii"), out)


def _encode_complex(value: complex, out: bytearray) -> None:
    if value.imag == 0:
        _encode_float(value.real, out)
    else:
        out += b"c"
        _encode_float(value.real, out)
        _encode_float(value.imag, out)


def _encode_decimal(value: decimal.Decimal, out: bytearray) -> None:
    if value.is_finite() and value == value.to_integral_value():
        _encode_int(int(value), out)
    else:
        _chunk(b"D", str(value.normalize()).encode("ascii"), out)


def _encode_sequence(tag: bytes, items: Any, out: bytearray) -> None:
    out += tag
    out += _INT.pack(len(items))
    for item in items:
        _encode(item, out)


def _encode_unordered(tag: bytes, items: Any, out: bytearray) -> None:
    parts = sorted(stable_bytes(item) for item in items)
    out += tag
    out += _INT.pack(len(parts))
    for part in parts:
        out += part


def _encode_text(value: str, out: bytearray) -> None:
    _chunk(b"s", value.encode("utf-8", "surrogatepass"), out)


_ENCODERS: dict[type, Callable[[Any, bytearray], None]] = {
    type(None): lambda v, out: out.extend(b"N"),
    bool: lambda v, out: _encode_int(int(v), out),
    int: _encode_int,
    float: _encode_float,
    complex: _encode_complex,
    str: _encode_text,
    bytes: lambda v, out: _chunk(b"b", v, out),
    bytearray: lambda v, out: _chunk(b"b", bytes(v), out),
    tuple: lambda v, out: _encode_sequence(b"(", v, out),
    list: lambda v, out: _encode(freeze(v), out),
    Tag: lambda v, out: _chunk(b"k", v.name.encode("ascii"), out),
    frozenset: lambda v, out: _encode_unordered(b"{", v, out),
    set: lambda v, out: _encode_unordered(b"{", v, out),
    dict: lambda v, out: _encode(freeze(v), out),
    decimal.Decimal: _encode_decimal,
    datetime.datetime: lambda v, out: _chunk(b"T", v.isoformat().encode("ascii"), out),
    datetime.date: lambda v, out: _chunk(b"a", v.isoformat().encode("ascii"), out),
    datetime.time: lambda v, out: _chunk(b"t", v.isoformat().encode("ascii"), out),
    datetime.timedelta: lambda v, out: _encode_sequence(
        b"r", (v.days, v.seconds, v.microseconds), out
    ),
    uuid.UUID: lambda v, out: _chunk(b"u", v.bytes, out),
}


def _encode(value: Any, out: bytearray) -> None:
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        encoder(value, out)
    else:
        _encode_other(value, out)


def _encode_other(value: Any, out: bytearray) -> None:
    kind = type(value)
    if isinstance(value, enum.Enum):
        _chunk(b"e", f"{_qualified_name(kind)}.{value.name}".encode(), out)
    elif kind.__module__ == "numpy":
        _encode_numpy(value, out)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _encode(_freeze_dataclass(value), out)
    elif _is_named_global(value):
        _chunk(b"g", _global_name(value).encode(), out)
    else:
        _encode_subclass_or_fail(value, out)


def _encode_numpy(value: Any, out: bytearray) -> None:
    if _is_ndarray(value):
        _encode(_freeze_array(value), out)
    elif hasattr(value, "item"):
        _encode(value.item(), out)  # numpy scalars equal their Python values
    else:
        _encode_subclass_or_fail(value, out)


def _freeze_dataclass(value: Any) -> tuple[Any, ...]:
    return (OBJECT, _qualified_name(type(value)), *_dataclass_fields(value, freeze))


def _is_named_global(value: Any) -> bool:
    """A module-level function, builtin or class, or a singleton pickled by global name.

    Bound methods and lambdas are not: their identity is more than their name.
    """
    if isinstance(value, (type, types.FunctionType)) or _is_module_builtin(value):
        return "<" not in value.__qualname__
    reducer = getattr(type(value), "__reduce__", None)
    if reducer is None or reducer is object.__reduce__:
        return False
    try:
        return isinstance(value.__reduce__(), str)
    except Exception:  # a broken __reduce__ just means "not a named singleton"
        return False


def _is_module_builtin(value: Any) -> bool:
    return isinstance(value, types.BuiltinFunctionType) and isinstance(
        getattr(value, "__self__", None), (types.ModuleType, type(None))
    )


def _global_name(value: Any) -> str:
    if isinstance(value, (type, types.FunctionType)) or _is_module_builtin(value):
        return _qualified_name(value)
    return f"{type(value).__module__}.{value.__reduce__()}"


_BASES: tuple[Any, ...] = (bool, int, float, complex, str, bytes, tuple, frozenset)


def _encode_subclass_or_fail(value: Any, out: bytearray) -> None:
    for base in _BASES:
        if isinstance(value, base):
            _ENCODERS[base](base(value), out)
            return
    raise TypeError(
        f"cannot make a stable (cross-process) key from a {type(value).__qualname__}; "
        "use hashable built-in values, or give the class a stable representation "
        "(a dataclass, an Enum, or a keymap of your own)"
    )
