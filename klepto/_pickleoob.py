"""Pickles whose large buffers travel out of band (PEP 574): a large array stored and loaded
without copies.

A protocol-5 pickle of a numpy array (or a ``bytearray``) can hand the array's memory to
the caller instead of copying it into the pickle. Stored that way, the value's payload is::

    count u32 | count x size u64 | the pickle | buffer 1 | ... | buffer count

(integers little-endian). Writing passes the buffers to the file as they are: the array's
own memory, never joined into one ``bytes``. Reading hands the unpickler slices of the
payload, which it uses in place: read into a ``bytearray``, an 800 KB array costs one read
of the file and no copy. A read-only payload (``bytes``) has each buffer copied once, so a
loaded array is always writable, as it is from an ordinary pickle.

Only buffers of at least :data:`OOB_MIN` bytes go out of band; a value with none is an
ordinary pickle. Values the C pickler cannot write alone (dill's business: lambdas, objects
of ``__main__``) are never written this way.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from klepto.errors import CorruptionError

__all__ = ["MAIN_MARK", "OOB_MIN", "dumps", "loads", "payload_parts"]

OOB_MIN = 1 << 16  # smaller buffers stay in the pickle (a table entry would cost more)
_COUNT = struct.Struct("<I")
MAIN_MARK = b"__main__"  # dill pickles what lives there by value: the C unpickler cannot


def dumps(obj: Any, protocol: int) -> tuple[bytes, list[memoryview]] | None:
    """The C pickler's bytes for ``obj`` and its large buffers (taken out of band, in
    order); ``None`` when the C pickler cannot write ``obj`` the way dill would read it."""
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickled in band
            return True
        if raw.nbytes < OOB_MIN:
            return True
        buffers.append(raw)
        return False

    try:
        data = pickle.dumps(obj, protocol, buffer_callback=out_of_band)
    except Exception:  # not swallowed: the caller pickles with dill, which raises if it must
        return None
    if MAIN_MARK in data:
        return None
    return data, buffers


def payload_parts(data: bytes, buffers: list[memoryview]) -> list[bytes | memoryview]:
    """The payload of ``dumps``'s result, as parts to write one after the other."""
    table = _COUNT.pack(len(buffers)) + struct.pack(f"<{len(buffers)}Q", *map(len, buffers))
    return [table + data, *buffers]


def loads(payload: bytes | bytearray | memoryview, where: dict[Any, Any]) -> Any:
    """The object in ``payload``; :class:`CorruptionError` (with ``where``) if its table
    does not fit it. Integrity is the caller's: ``payload`` must have been checked."""
    view = memoryview(payload)
    sizes = _sizes(view, where)
    start = _COUNT.size + 8 * len(sizes)
    end = len(view) - sum(sizes)
    if end < start:
        raise CorruptionError("out-of-band buffers overrun their payload", **where)
    buffers: list[Any] = []
    at = end
    for size in sizes:
        piece = view[at : at + size]
        buffers.append(bytearray(piece) if view.readonly else piece)
        at += size
    return pickle.loads(view[start:end], buffers=buffers)


def _sizes(view: memoryview, where: dict[Any, Any]) -> tuple[int, ...]:
    if len(view) < _COUNT.size:
        raise CorruptionError("out-of-band buffer table truncated", **where)
    (count,) = _COUNT.unpack_from(view)
    if len(view) < _COUNT.size + 8 * count:
        raise CorruptionError("out-of-band buffer table truncated", **where)
    return struct.unpack_from(f"<{count}Q", view, _COUNT.size)
