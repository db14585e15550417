"""Values of the operation store as data: the ``safe`` serializer's tagged JSON, plus handlers.

Every value an operation carries is encoded exactly as :mod:`klepto._safeformat` encodes it
(``{"$t": [...]}`` tuple, ``{"$f": "nan"}``, ``{"$b": ...}`` bytes, ...), so any op record
decodes with ``klepto.serializers.get_serializer("safe")``. One tag is added: values of types
the store learns through a :class:`TypeHandler` are ``{"$h": [tag, data]}``; the safe
serializer decodes them as :class:`TaggedValue`, a store's codec with the right handler back
into the object.

The store builds its in-memory value *from the encoded data* (``decode(encode(v))``), the
same way a replay does, which is why the in-memory state always equals the replayed state.
Containers are walked here; leaf types (bytes, datetimes, Decimal, UUID, complex) use the
safe format's own tables, so the two can never drift apart.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from klepto import _safeformat
from klepto.errors import KleptoError

__all__ = [
    "DataclassAsDictHandler",
    "DataclassHandler",
    "StrEnumHandler",
    "TaggedValue",
    "TypeHandler",
    "UnknownTypeError",
    "ValueCodec",
    "WeakEnumHandler",
]

HANDLER_TAG = "$h"
UNKNOWN_POLICIES = ("error", "keep")
# Ints beyond this many bits cannot be written as JSON text under Python's default
# int/str conversion limit (4300 digits); refuse them when the operation is made.
_MAX_INT_BITS = 14_000


class UnknownTypeError(KleptoError, ValueError):
    """A stored value names a type handler, or a class, that this reader was not given."""


class TaggedValue(NamedTuple):
    """A handler-encoded value read without its handler: the handler's ``tag`` and data.

    Hashable even when its data holds lists (it may be a dict key or a set element).
    """

    tag: str
    data: Any

    def __hash__(self) -> int:
        return hash((self.tag, _frozen(self.data)))


def _frozen(data: Any) -> Any:
    if isinstance(data, (list, tuple)):
        return (type(data).__name__, tuple(_frozen(x) for x in data))
    if isinstance(data, dict):
        return ("dict", frozenset((_frozen(k), _frozen(v)) for k, v in data.items()))
    if isinstance(data, (set, frozenset)):
        return frozenset(_frozen(x) for x in data)
    return data


_safeformat.register_safe_type(
    TaggedValue, HANDLER_TAG, lambda v: [v.tag, v.data], lambda d: TaggedValue(d[0], d[1])
)


class TypeHandler:
    """How the store keeps values of a type it does not know, as data (never code).

    ``supports(obj)`` says whether this handler takes ``obj``; ``encode(obj)`` returns a value
    the store knows (plain data, nested containers, other handled values). With a ``tag``
    the value is stored as ``{"$h": [tag, data]}`` and ``decode(data)`` gives the object back
    on replay; with ``tag = None`` the encoded data *is* the stored value (a lossy mapping, as
    laaos's ``StrEnumHandler``), in memory as on disk. This is laaos's ``supports`` / ``wrap``
    / ``repr`` protocol with data in place of source text.
    """

    tag: str | None = None

    def supports(self, obj: Any) -> bool:
        raise NotImplementedError

    def encode(self, obj: Any) -> Any:
        raise NotImplementedError

    def decode(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} values do not decode")


class _ClassRegistry:
    """Classes a handler may rebuild, by qualified name: an allow-list, never an import."""

    def __init__(self, classes: Iterable[type]) -> None:
        self.known: dict[str, type] = {}
        for cls in classes:
            self.learn(cls)

    def learn(self, cls: type) -> None:
        self.known.setdefault(cls.__qualname__, cls)

    def find(self, name: Any, handler: str) -> type:
        cls = self.known.get(name) if isinstance(name, str) else None
        if cls is None:
            raise UnknownTypeError(
                f"{handler} does not know the class {name!r}: pass it, as in "
                f"{handler}({name if isinstance(name, str) else 'Cls'})"
            )
        return cls


class WeakEnumHandler(TypeHandler):
    """Enum members, stored as ``[class qualname, member name]`` and rebuilt as members.

    Encoding takes any enum member (and remembers its class); decoding rebuilds members of
    the classes given here or seen while encoding, and raises for any other class.
    """

    tag = "enum"

    def __init__(self, *enum_types: type[enum.Enum]) -> None:
        self._classes = _ClassRegistry(enum_types)

    def supports(self, obj: Any) -> bool:
        return isinstance(obj, enum.Enum)

    def encode(self, obj: Any) -> Any:
        self._classes.learn(type(obj))
        return [type(obj).__qualname__, obj.name]

    def decode(self, data: Any) -> Any:
        name, member = data
        return self._classes.find(name, "WeakEnumHandler")[member]  # type: ignore[index]


class StrEnumHandler(TypeHandler):
    """Enum members stored as the string ``str(member)`` (``'Color.RED'``); lossy, as in laaos."""

    tag = None

    def supports(self, obj: Any) -> bool:
        return isinstance(obj, enum.Enum)

    def encode(self, obj: Any) -> Any:
        return str(obj)


class DataclassHandler(TypeHandler):
    """Dataclass instances, stored as ``[class qualname, {field: value}]`` and rebuilt.

    Fields are encoded like any stored value. Classes are allowed as in
    :class:`WeakEnumHandler`. The rebuilt instance is a copy: changing its attributes later
    is not logged (assign it again instead).
    """

    tag = "dataclass"

    def __init__(self, *classes: type) -> None:
        self._classes = _ClassRegistry(classes)

    def supports(self, obj: Any) -> bool:
        return dataclasses.is_dataclass(obj) and not isinstance(obj, type)

    def encode(self, obj: Any) -> Any:
        self._classes.learn(type(obj))
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return [type(obj).__qualname__, fields]

    def decode(self, data: Any) -> Any:
        name, fields = data
        return self._classes.find(name, "DataclassHandler")(**fields)


class DataclassAsDictHandler(TypeHandler):
    """Dataclass instances stored as plain dicts of their fields (then a mutable store dict)."""

    tag = None

    def supports(self, obj: Any) -> bool:
        return dataclasses.is_dataclass(obj) and not isinstance(obj, type)

    def encode(self, obj: Any) -> Any:
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _nonfinite(value: float) -> dict[Any, Any]:
    return {"$f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _check_int(value: int) -> int:
    if value.bit_length() > _MAX_INT_BITS:
        raise ValueError(f"int of {value.bit_length()} bits is too large for the operation store")
    return value


# Subclasses of built-in types are stored as the built-in type (a namedtuple as a tuple).
_COERCE: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (int, int),
    (float, float),
    (str, str),
    (bytes, bytes),
    (tuple, tuple),
    (frozenset, frozenset),
    (set, set),
    (list, list),
    (dict, dict),
)


class ValueCodec:
    """Encodes values into op data and decodes op data, with one store's type handlers.

    ``unknown`` says what decoding does with a handler tag that no handler here knows:
    ``'error'`` raises, ``'keep'`` returns a :class:`TaggedValue`.
    """

    def __init__(self, handlers: Iterable[TypeHandler] | None = None, unknown: str = "error"):
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, not {unknown!r}")
        self.handlers = tuple(handlers or ())
        for handler in self.handlers:
            if not callable(getattr(handler, "supports", None)):
                raise TypeError(f"not a type handler (no supports()): {handler!r}")
        self._by_tag = {h.tag: h for h in self.handlers if h.tag is not None}
        self.unknown = unknown
        self._containers = {
            list: self._encode_list,
            dict: self._encode_dict,
            tuple: lambda v: {"$t": [self.encode(x) for x in v]},
            set: lambda v: {"$s": [self.encode(x) for x in v]},
            frozenset: lambda v: {"$fs": [self.encode(x) for x in v]},
        }

    # --- encoding -------------------------------------------------------------------------
    def encode(self, value: Any) -> Any:
        """The op data for ``value``; raises ``TypeError``/``ValueError`` for what cannot be."""
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is float:
            return value if value - value == 0.0 else _nonfinite(value)
        if kind is int:
            return _check_int(value)
        container = self._containers.get(kind)  # type: ignore[call-overload]
        if container is not None:
            return container(value)
        leaf = _safeformat._ENCODERS.get(kind)
        if leaf is not None:
            return leaf(value)
        return self._encode_other(value)

    def _encode_list(self, value: list[Any]) -> list[Any]:
        encode = self.encode
        return [encode(x) for x in value]

    def _encode_dict(self, value: dict[Any, Any]) -> Any:
        encode = self.encode
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"$d": [[self.encode_key(k), encode(v)] for k, v in value.items()]}

    def _encode_other(self, value: Any) -> Any:
        plain = getattr(value, "_klepto_plain", None)
        if plain is not None:  # a store container: its current contents, as plain data
            return self.encode(plain())
        if isinstance(value, TaggedValue):  # read without its handler: written back as is
            return {HANDLER_TAG: [value.tag, self.encode(value.data)]}
        for handler in self.handlers:
            if handler.supports(value):
                data = self.encode(handler.encode(value))
                return data if handler.tag is None else {HANDLER_TAG: [handler.tag, data]}
        if isinstance(value, enum.Enum):
            raise TypeError(
                f"enum member {value!r} needs a type handler: pass "
                "type_handlers=[WeakEnumHandler()] (or StrEnumHandler())"
            )
        for base, convert in _COERCE:
            if isinstance(value, base):
                return self.encode(convert(value))
        try:
            return _safeformat._encode(value)  # types added with register_safe_type
        except TypeError as exc:
            raise TypeError(
                f"the operation store cannot store {type(value).__qualname__} values; "
                "pass a TypeHandler in type_handlers=[...]"
            ) from exc

    def encode_key(self, key: Any) -> Any:
        """The op data for a dict key or set element; it must decode to an equal hashable."""
        kind = type(key)
        if kind is str:
            return key
        if kind is int:
            return _check_int(key)
        hash(key)  # unhashable keys fail here, as in a dict
        data = self.encode(key)
        if self.decode(data) != key:
            raise ValueError(
                f"{key!r} cannot be a key in the operation store: it is not equal to itself "
                "after a round trip (a NaN?), so a replay could not find it"
            )
        return data

    # --- decoding -------------------------------------------------------------------------
    def decode(self, data: Any) -> Any:
        """The plain value ``data`` stands for (lists, dicts, sets, tuples, ...)."""
        kind = type(data)
        if kind is list:
            decode = self.decode
            return [decode(x) for x in data]
        if kind is not dict:
            return data
        if len(data) == 1:
            ((tag, payload),) = data.items()
            if tag[:1] == "$":
                return self._decode_tag(tag, payload)
        decode = self.decode
        return {k: decode(v) for k, v in data.items()}

    def decode_key(self, data: Any) -> Any:
        return data if type(data) is not dict else self.decode(data)

    def _decode_tag(self, tag: str, payload: Any) -> Any:
        decode = self.decode
        if tag == "$t":
            return tuple(decode(x) for x in payload)
        if tag == "$s":
            return {decode(x) for x in payload}
        if tag == "$fs":
            return frozenset(decode(x) for x in payload)
        if tag == "$d":
            return {decode(k): decode(v) for k, v in payload}
        if tag == HANDLER_TAG:
            return self._decode_handled(payload)
        return _safeformat._decode_tag(tag, payload)

    def _decode_handled(self, payload: Any) -> Any:
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)):
            raise ValueError(f"malformed handler value {payload!r:.60}")
        tag, data = payload
        handler = self._by_tag.get(tag)
        if handler is not None:
            return handler.decode(self.decode(data))
        if self.unknown == "keep":
            return TaggedValue(tag, self.decode(data))
        raise UnknownTypeError(
            f"no type handler for tag {tag!r}: pass one in type_handlers=[...] "
            "(or unknown='keep' to get TaggedValue objects)"
        )
