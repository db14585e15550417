"""The ``safe`` serializer's format: tagged JSON that decodes without executing any code.

Plain JSON values map to themselves. Everything JSON cannot say is a one-key object whose key
is a tag: ``{"$t": [...]}`` tuple, ``{"$b": "<base64>"}`` bytes, ``{"$s": [...]}`` set,
``{"$fs": [...]}`` frozenset, ``{"$f": "nan"}`` non-finite float, ``{"$c": [re, im]}`` complex,
``{"$d": [[k, v], ...]}`` dict with non-str keys (or a key that looks like a tag),
``{"$dt"|"$date"|"$time": iso}``, ``{"$td": [days, seconds, microseconds]}``,
``{"$dec": "1.10"}`` Decimal, ``{"$uuid": hex}``, ``{"$su": "<base64>"}`` text holding
surrogate code points (its UTF-8 with ``surrogatepass``). Other types can be added with
:func:`register_safe_type`; decoding looks tags up in that allow-list and nothing else.

A datetime is its ISO text, so an aware one comes back with the same wall time and UTC
offset under a fixed-offset ``datetime.timezone``, not its original ``tzinfo`` (a
``ZoneInfo`` zone's name and rules are not kept): the same instant, but ``==`` between the
two is ``False`` for a time in a daylight-saving gap or fold (PEP 495's rule for comparing
datetimes of different zones there).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

_Encoder = Callable[[Any], Any]
_Decoder = Callable[[Any], Any]

_EXTRA_TYPES: dict[type, tuple[str, _Encoder]] = {}
_EXTRA_TAGS: dict[str, _Decoder] = {}


def register_safe_type(cls: type, tag: str, encode: _Encoder, decode: _Decoder) -> None:
    """Teach the safe format a type: ``encode(obj)`` gives safe data, ``decode(data)`` the obj.

    ``tag`` must start with ``$`` and must not be one of the built-in tags.
    """
    if not tag.startswith("$") or tag in _DECODERS:
        raise ValueError(f"invalid or reserved safe-format tag {tag!r}")
    _EXTRA_TYPES[cls] = (tag, encode)
    _EXTRA_TAGS[tag] = decode


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"$f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _has_surrogates(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _str(value: str) -> Any:
    # JSON would merge a surrogate *pair* into one character: carry such text as bytes.
    if _has_surrogates(value):
        return {"$su": base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")}
    return value


def _plain_key(key: Any) -> bool:
    return type(key) is str and not key.startswith("$") and not _has_surrogates(key)


def _dict(value: dict[Any, Any]) -> Any:
    if all(_plain_key(k) for k in value):
        return {k: _encode(v) for k, v in value.items()}
    return {"$d": [[_encode(k), _encode(v)] for k, v in value.items()]}


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    type(None): lambda v: v,
    bool: lambda v: v,
    int: lambda v: v,
    str: _str,
    float: _float,
    list: lambda v: [_encode(x) for x in v],
    dict: _dict,
    tuple: lambda v: {"$t": [_encode(x) for x in v]},
    bytes: lambda v: {"$b": base64.b64encode(v).decode("ascii")},
    bytearray: lambda v: {"$ba": base64.b64encode(v).decode("ascii")},
    set: lambda v: {"$s": [_encode(x) for x in v]},
    frozenset: lambda v: {"$fs": [_encode(x) for x in v]},
    complex: lambda v: {"$c": [_float(v.real), _float(v.imag)]},
    datetime.datetime: lambda v: {"$dt": v.isoformat()},
    datetime.date: lambda v: {"$date": v.isoformat()},
    datetime.time: lambda v: {"$time": v.isoformat()},
    datetime.timedelta: lambda v: {"$td": [v.days, v.seconds, v.microseconds]},
    decimal.Decimal: lambda v: {"$dec": str(v)},
    uuid.UUID: lambda v: {"$uuid": v.hex},
}


def _encode(value: Any) -> Any:
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    for cls, (tag, encode) in _EXTRA_TYPES.items():
        if isinstance(value, cls):
            return {tag: _encode(encode(value))}
    raise TypeError(
        f"the safe serializer cannot encode {type(value).__qualname__!s} values; "
        "register it with klepto.serializers.register_safe_type or use a pickle serializer"
    )


def _nonfinite(text: str) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise ValueError(f"invalid non-finite float {text!r}")
    return float(text)


def _complex(parts: list[Any]) -> complex:
    real, imag = (_decode(p) for p in parts)
    return complex(real, imag)


_DECODERS: dict[str, _Decoder] = {
    "$f": _nonfinite,
    "$t": lambda v: tuple(_decode(x) for x in v),
    "$b": lambda v: base64.b64decode(v, validate=True),
    "$ba": lambda v: bytearray(base64.b64decode(v, validate=True)),
    "$s": lambda v: {_decode(x) for x in v},
    "$fs": lambda v: frozenset(_decode(x) for x in v),
    "$c": _complex,
    "$d": lambda v: {_decode(k): _decode(x) for k, x in v},
    "$dt": datetime.datetime.fromisoformat,
    "$date": datetime.date.fromisoformat,
    "$time": datetime.time.fromisoformat,
    "$td": lambda v: datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$dec": decimal.Decimal,
    "$uuid": uuid.UUID,
    "$su": lambda v: base64.b64decode(v, validate=True).decode("utf-8", "surrogatepass"),
}


def _decode(value: Any) -> Any:
    if type(value) is list:
        return [_decode(x) for x in value]
    if type(value) is not dict:
        return value
    if len(value) == 1:
        ((tag, payload),) = value.items()
        if tag.startswith("$"):
            return _decode_tag(tag, payload)
    return {k: _decode(v) for k, v in value.items()}


def _decode_tag(tag: str, payload: Any) -> Any:
    decoder = _DECODERS.get(tag)
    if decoder is not None:
        return decoder(payload)
    extra = _EXTRA_TAGS.get(tag)
    if extra is None:
        raise ValueError(f"unknown safe-format tag {tag!r}")
    return extra(_decode(payload))


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as tagged JSON (UTF-8 bytes)."""
    return json_bytes(_encode(obj), allow_nan=False)


def json_bytes(data: Any, *, allow_nan: bool = True) -> bytes:
    """Compact JSON as UTF-8; strings with lone surrogates are written as ``\\uXXXX`` escapes.

    (Such strings, e.g. undecodable file names, cannot be encoded as UTF-8 text, but JSON
    escapes carry them, and ``json.loads`` restores them exactly.)
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"), allow_nan=allow_nan).encode("ascii")


def loads(data: bytes | str) -> Any:
    """Decode tagged JSON produced by :func:`dumps`; never executes code."""
    return _decode(json.loads(data))
