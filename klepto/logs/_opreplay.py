"""Reading an operation store: replaying op records into plain data, and exporting them.

Replaying parses JSON (and compact records, :mod:`klepto.logs._oprecord`) and applies each
operation to plain dicts, lists and sets; nothing in the file is ever executed. An
operation that does not apply (a missing key, an index out of range, an unknown op code)
means the log is inconsistent and raises :class:`~klepto.errors.CorruptRecordError`
naming the record and the operation.

Exports are for people and tools, never for loading: laaos-style Python source
(``store['losses'].append(0.5)``) and JSON lines (one stored operation per line).
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from klepto.errors import CorruptRecordError
from klepto.logs._opcodec import TaggedValue, UnknownTypeError, ValueCodec
from klepto.logs._oprecord import APPEND_FLOAT, compact_append, parse_compact

__all__ = ["FORMAT", "METADATA", "VERSION", "check_metadata", "python_lines", "replay"]

FORMAT = "klepto.oplog"
VERSION = 2  # version 2 adds compact records; a version 1 store is written in version 1
READABLE = (1, 2)
METADATA = json.dumps({"format": FORMAT, "version": VERSION}).encode("ascii")
_COMPACT = bytes([APPEND_FLOAT])

_NESTED = (list, dict)
_Apply = Callable[[Any, list[Any], ValueCodec], Any]


def check_metadata(metadata: bytes | None, path: str) -> int:
    """The format version of an operation store's metadata; raise unless we can read it."""
    try:
        meta = json.loads(metadata) if metadata else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptRecordError("not an operation store (no klepto.oplog metadata)", path=path)
    version = meta.get("version")
    if version not in READABLE or type(version) is not int:
        raise ValueError(
            f"{path}: operation store format version {version!r} is not supported "
            f"(this klepto reads versions {', '.join(map(str, READABLE))})"
        )
    return version


def _target(root: Any, path: list[Any], codec: ValueCodec) -> Any:
    node = root
    for step in path:
        node = node[step if type(step) is not dict else codec.decode(step)]
    return node


def _value(data: Any, codec: ValueCodec) -> Any:
    return data if type(data) not in _NESTED else codec.decode(data)


def _set(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    node = _target(root, op[1], codec)
    key = codec.decode_key(op[2])
    if type(node) is list and not 0 <= key < len(node):
        raise IndexError(f"index {key} out of range")
    node[key] = _value(op[3], codec)
    return root


def _delete(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    node = _target(root, op[1], codec)
    key = codec.decode_key(op[2])
    if type(node) is list and not 0 <= key < len(node):
        raise IndexError(f"index {key} out of range")
    del node[key]
    return root


def _insert(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    node = _target(root, op[1], codec)
    if type(node) is not list or not 0 <= op[2] <= len(node):
        raise IndexError(f"cannot insert at {op[2]!r}")
    node.insert(op[2], _value(op[3], codec))
    return root


def _append(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    _list(root, op, codec).append(_value(op[2], codec))
    return root


def _extend(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    _list(root, op, codec).extend(codec.decode(op[2]))
    return root


def _clear(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    node = _target(root, op[1], codec)
    if type(node) not in (dict, list, set):
        raise TypeError(f"cannot clear a {type(node).__name__}")
    node.clear()
    return root


def _reverse(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    _list(root, op, codec).reverse()
    return root


def _permute(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    node = _list(root, op, codec)
    order = op[2]
    if sorted(order) != list(range(len(node))):
        raise ValueError("not a permutation of the list's positions")
    node[:] = [node[i] for i in order]
    return root


def _add(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    _set_node(root, op, codec).add(codec.decode_key(op[2]))
    return root


def _discard(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    _set_node(root, op, codec).discard(codec.decode_key(op[2]))
    return root


def _replace_root(root: Any, op: list[Any], codec: ValueCodec) -> Any:
    value = codec.decode(op[1])
    if type(value) is not dict:
        raise TypeError("the root of an operation store is a dict")
    return value


def _list(root: Any, op: list[Any], codec: ValueCodec) -> list[Any]:
    node = _target(root, op[1], codec)
    if type(node) is not list:
        raise TypeError(f"{type(node).__name__} is not a list")
    return node


def _set_node(root: Any, op: list[Any], codec: ValueCodec) -> set[Any]:
    node = _target(root, op[1], codec)
    if type(node) is not set:
        raise TypeError(f"{type(node).__name__} is not a set")
    return node


APPLY: dict[str, _Apply] = {
    "set": _set,
    "del": _delete,
    "ins": _insert,
    "app": _append,
    "ext": _extend,
    "clr": _clear,
    "rev": _reverse,
    "perm": _permute,
    "add": _add,
    "dis": _discard,
    "root": _replace_root,
}


def replay(records: Iterable[bytes], codec: ValueCodec, path: str) -> dict[Any, Any]:
    """The plain state after every operation of ``records`` (a fresh root ``{}`` first)."""
    root: dict[Any, Any] = {}
    paths: dict[bytes, Any] = {}
    for number, record in enumerate(records):
        if record[:1] == _COMPACT:
            _append_compact(root, record, paths, codec, number, path)
        else:
            root = _apply_all(root, _parse(record, number, path), codec, number, path)
    return root


def _append_compact(
    root: Any, record: bytes, paths: dict[bytes, Any], codec: ValueCodec, number: int, path: str
) -> None:
    """Apply a compact record (one list append of a float) to ``root``."""
    try:
        steps, value = compact_append(record, paths)
        node = root
        for step in steps:
            node = node[step if type(step) is not dict else codec.decode(step)]
        if type(node) is not list:
            raise TypeError(f"{type(node).__name__} is not a list")
        node.append(value)
    except UnknownTypeError:
        raise
    except (LookupError, TypeError, ValueError, AttributeError, struct.error) as exc:
        raise CorruptRecordError(
            f"compact record {number} does not apply: {type(exc).__name__}: {exc}", path=path
        ) from exc


def _parse(record: bytes, number: int, path: str) -> list[Any]:
    if record[:1] == _COMPACT:
        try:
            return parse_compact(record)
        except (ValueError, struct.error) as exc:
            raise CorruptRecordError(f"record {number} is damaged ({exc})", path=path) from None
    try:
        ops = json.loads(record)
    except ValueError as exc:
        raise CorruptRecordError(f"record {number} is not JSON ({exc})", path=path) from None
    if type(ops) is not list:
        raise CorruptRecordError(f"record {number} is not a list of operations", path=path)
    return ops


def _apply_all(root: Any, ops: list[Any], codec: ValueCodec, number: int, path: str) -> Any:
    decode = codec.decode
    for index, op in enumerate(ops):
        try:
            if op[0] == "app":  # the common case, inline: a list append at a plain path
                node = root
                for step in op[1]:
                    node = node[step if type(step) is not dict else decode(step)]
                value = op[2]
                if type(node) is not list:
                    raise TypeError(f"{type(node).__name__} is not a list")
                node.append(value if type(value) not in _NESTED else decode(value))
            else:
                root = APPLY[op[0]](root, op, codec)
        except UnknownTypeError:
            raise
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptRecordError(
                f"operation {index} of record {number} ({json.dumps(op)[:80]}) does not apply:"
                f" {type(exc).__name__}: {exc}",
                path=path,
            ) from exc
    return root


# --- exports -----------------------------------------------------------------------------
def _float_repr(value: float) -> str:
    return repr(value) if math.isfinite(value) else f"float({str(value)!r})"


def _tuple_repr(value: tuple[Any, ...]) -> str:
    inner = ", ".join(map(pyrepr, value))
    return f"({inner},)" if len(value) == 1 else f"({inner})"


def _set_repr(value: set[Any]) -> str:
    return "{" + ", ".join(map(pyrepr, value)) + "}" if value else "set()"


_REPRS: dict[type, Callable[[Any], str]] = {
    float: _float_repr,
    complex: lambda v: f"complex({_float_repr(v.real)}, {_float_repr(v.imag)})",
    list: lambda v: "[" + ", ".join(map(pyrepr, v)) + "]",
    tuple: _tuple_repr,
    dict: lambda v: "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(x)}" for k, x in v.items()) + "}",
    set: _set_repr,
    frozenset: lambda v: f"frozenset({_set_repr(set(v))})",
}


def pyrepr(value: Any) -> str:
    """Python-like source for a decoded value (for reading; floats like ``float('nan')``)."""
    render = _REPRS.get(type(value))
    if render is not None:
        return render(value)
    if type(value) is TaggedValue:
        return _tagged_repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    return repr(value)


def _tagged_repr(value: TaggedValue) -> str:
    data = value.data
    if value.tag == "enum" and isinstance(data, list) and len(data) == 2:
        return f"{data[0]}.{data[1]}"
    if value.tag == "dataclass" and isinstance(data, list) and isinstance(data[1], dict):
        fields = ", ".join(f"{k}={pyrepr(v)}" for k, v in data[1].items())
        return f"{data[0]}({fields})"
    return f"TaggedValue({value.tag!r}, {pyrepr(data)})"


def _where(path: list[Any], codec: ValueCodec) -> str:
    return "store" + "".join(f"[{pyrepr(codec.decode_key(step))}]" for step in path)


def _source(op: list[Any], codec: ValueCodec) -> str:
    code = op[0]
    if code == "root":
        return f"store = {pyrepr(codec.decode(op[1]))}"
    target = _where(op[1], codec)
    args = [pyrepr(codec.decode(arg)) for arg in op[2:]]
    forms = {
        "set": lambda: f"{target}[{args[0]}] = {args[1]}",
        "del": lambda: f"del {target}[{args[0]}]",
        "ins": lambda: f"{target}.insert({args[0]}, {args[1]})",
        "app": lambda: f"{target}.append({args[0]})",
        "ext": lambda: f"{target}.extend({args[0]})",
        "clr": lambda: f"{target}.clear()",
        "rev": lambda: f"{target}.reverse()",
        "perm": lambda: f"{target}[:] = [{target}[i] for i in {args[0]}]",
        "add": lambda: f"{target}.add({args[0]})",
        "dis": lambda: f"{target}.discard({args[0]})",
    }
    form = forms.get(code)
    if form is None:
        raise CorruptRecordError(f"unknown operation {code!r}")
    return form()


def python_lines(records: Iterable[bytes], path: str) -> Iterator[str]:
    """laaos-style source lines for the operations of ``records`` (for humans only)."""
    codec = ValueCodec(unknown="keep")
    yield f"# Operations of the klepto operation store {path}, as Python for reading."
    yield "# Never load this file: use klepto.logs.safe_load on the store itself."
    yield "store = {}"
    for number, record in enumerate(records):
        for op in _parse(record, number, path):
            yield _source(op, codec)


def json_lines(records: Iterable[bytes], path: str) -> Iterator[str]:
    """One stored operation per line, as JSON (the safe serializer's tagged values)."""
    for number, record in enumerate(records):
        for op in _parse(record, number, path):
            yield json.dumps(op, separators=(",", ":"))
