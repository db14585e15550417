"""Op records of the operation store: JSON arrays of operations, and compact records.

A record is normally a JSON array of operations (``dumps``). Version 2 of the format adds a
*compact record* for the hot path of a results log, ``store[...].append(float)`` committed
on its own: byte 0 is ``0x01``, bytes 1-8 the float (IEEE 754 binary64, little-endian),
the rest the path as a JSON array. It stands for ``[["app", path, value]]``, takes half the
bytes and avoids printing the float as text, which costs more than the rest of the record.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

__all__ = ["APPEND_FLOAT", "OpEncoder", "dumps", "parse_compact"]

APPEND_FLOAT = 0x01
_APPEND_FLOAT = struct.Struct("<Bd")
_FLOAT_AT_1 = struct.Struct("<d")
_PATHS_KEPT = 1024  # distinct paths whose JSON is kept (a results log has a handful)
_encoder = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), allow_nan=False, check_circular=False
)


def dumps(ops: list[Any]) -> bytes:
    """A JSON record of ``ops``."""
    return _encoder.encode(ops).encode("ascii")


class OpEncoder:
    """The record of one operation: compact when it can be (and ``compact`` is on)."""

    def __init__(self, compact: bool) -> None:
        self.compact = compact
        self._paths: dict[tuple[Any, ...], bytes] = {}

    def record(self, op: tuple[Any, ...]) -> bytes:
        value = op[-1]
        if type(value) is float and op[0] == "app" and self.compact:
            try:
                path = self._paths.get(op[1])
            except TypeError:  # a step is an encoded key (a dict): not kept
                path = dumps(list(op[1]))
            if path is None:
                path = self._path(op[1])
            return _APPEND_FLOAT.pack(APPEND_FLOAT, value) + path
        return dumps([op])

    def _path(self, path: tuple[Any, ...]) -> bytes:
        if len(self._paths) >= _PATHS_KEPT:
            self._paths.clear()
        encoded = self._paths[path] = dumps(list(path))
        return encoded


def parse_compact(record: bytes | memoryview) -> list[Any]:
    """The operations of a compact record (a list of one), in the JSON records' form: a
    non-finite float is ``{"$f": ...}`` there. Raises ``ValueError`` for anything else."""
    if len(record) < 10 or record[0] != APPEND_FLOAT:
        raise ValueError("not a compact operation record")
    (value,) = _FLOAT_AT_1.unpack_from(record, 1)
    path = json.loads(bytes(record[9:]))
    if type(path) is not list:
        raise ValueError("the path of a compact record is not a JSON array")
    if not math.isfinite(value):
        value = {"$f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    return [["app", path, value]]


def compact_append(record: bytes, paths: dict[bytes, Any]) -> tuple[Any, float]:
    """``(path, value)`` of a compact record, the path parsed once per distinct path."""
    tail = record[9:]
    path = paths.get(tail)
    if path is None:
        path = json.loads(tail)
        if type(path) is not list:
            raise ValueError("the path of a compact record is not a JSON array")
        if len(paths) >= _PATHS_KEPT:
            paths.clear()
        paths[tail] = path
    return path, _FLOAT_AT_1.unpack_from(record, 1)[0]
