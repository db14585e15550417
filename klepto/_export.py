"""Writing a store's contents as text: JSON lines, Python source, CSV.

* ``jsonl``: one ``{"key": ..., "value": ...}`` object per line. Values JSON has no type for
  are written as tagged objects: ``{"$tuple": [...]}``, ``{"$bytes": "<base64>"}``,
  ``{"$set": [...]}``, ``{"$float": "nan"}``, a dict with non-str keys as
  ``{"$items": [[k, v], ...]}``, and anything else as ``{"$repr": "..."}``.
* ``py``: ``memo = {`` one ``repr(key): repr(value),`` line per entry ``}``: for reading,
  and readable back with ``ast.literal_eval`` when every value is a literal (it is the
  layout of a classic ``serialized=False`` file archive, so ``klepto migrate`` reads it).
* ``csv``: a ``key,value`` header, then ``repr(key), repr(value)`` per entry.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from collections.abc import Iterable
from typing import IO, Any

__all__ = ["FORMATS", "jsonable", "write"]


def _float(obj: float) -> Any:
    return obj if math.isfinite(obj) else {"$float": repr(obj)}


def _dict(obj: dict[Any, Any]) -> Any:
    if all(isinstance(key, str) for key in obj):
        return {key: jsonable(value) for key, value in obj.items()}
    return {"$items": [[jsonable(k), jsonable(v)] for k, v in obj.items()]}


_CONVERTERS: list[tuple[Any, Any]] = [
    ((type(None), bool, int, str), lambda obj: obj),
    (float, _float),
    (list, lambda obj: [jsonable(item) for item in obj]),
    (tuple, lambda obj: {"$tuple": [jsonable(item) for item in obj]}),
    ((set, frozenset), lambda obj: {"$set": sorted((jsonable(i) for i in obj), key=repr)}),
    (
        (bytes, bytearray, memoryview),
        lambda obj: {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")},
    ),
    (dict, _dict),
]


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data, non-JSON types tagged (see the module docstring)."""
    for types, convert in _CONVERTERS:
        if isinstance(obj, types):
            return convert(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return jsonable(tolist())
    return {"$repr": repr(obj)}


def _jsonl(items: Iterable[tuple[Any, Any]], stream: IO[str]) -> int:
    count = 0
    for key, value in items:
        line = {"key": jsonable(key), "value": jsonable(value)}
        stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


def _py(items: Iterable[tuple[Any, Any]], stream: IO[str]) -> int:
    count = 0
    stream.write("# Exported by klepto for reading: ast.literal_eval the dict (never exec).\n")
    stream.write("memo = {\n")
    for key, value in items:
        stream.write(f"    {key!r}: {value!r},\n")
        count += 1
    stream.write("}\n")
    return count


def _csv(items: Iterable[tuple[Any, Any]], stream: IO[str]) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["key", "value"])
    count = 0
    for key, value in items:
        writer.writerow([repr(key), repr(value)])
        count += 1
    return count


FORMATS = {"jsonl": _jsonl, "py": _py, "csv": _csv}


def write(items: Iterable[tuple[Any, Any]], stream: IO[str], format: str = "jsonl") -> int:
    """Write ``(key, value)`` items to ``stream`` in ``format``; return how many."""
    try:
        writer = FORMATS[format]
    except KeyError:
        raise ValueError(f"unknown export format {format!r} (use {', '.join(FORMATS)})") from None
    return writer(items, stream)
