"""Bulk reads of SQL archives: many keys in one ``SELECT ... WHERE kdigest IN (...)``.

``cache.load(*keys)`` (and the memoizer's loads) read through :func:`get_many`: one round
trip per :data:`BATCH` keys instead of one per key. Statements are compiled for a few list
lengths only (:data:`SIZES`); a shorter list is padded by repeating its last digest, which
selects nothing twice. Bulk writes need nothing here: ``executemany`` of the upsert is one
round trip per batch with both server drivers (PyMySQL rewrites it into one multi-row
``INSERT``; psycopg sends it in pipeline mode).
"""

from __future__ import annotations

import bisect
from typing import Any

import sqlalchemy as sa

from klepto.archives._sqlengine import Connector
from klepto.archives._sqlschema import Compiled, Schema

__all__ = ["BATCH", "SIZES", "get_many"]

#: The list lengths statements are compiled for; the last one is the batch size.
SIZES = (1, 8, 64, 500)
BATCH = SIZES[-1]

_COMPILED: dict[tuple[str, str, int], Compiled] = {}


def _select_in(schema: Schema, size: int) -> Compiled:
    cache_key = (schema.name, schema.dialect.name, size)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        data = schema.data
        digests: list[Any] = [sa.bindparam(f"d{i}") for i in range(size)]
        statement = sa.select(data.c.kdigest, data.c.vbytes).where(data.c.kdigest.in_(digests))
        compiled = _COMPILED[cache_key] = schema.compile(statement)
    return compiled


def _fetch_batch(connector: Connector, schema: Schema, digests: list[str]) -> list[Any]:
    size = SIZES[bisect.bisect_left(SIZES, len(digests))]
    padded = digests + [digests[-1]] * (size - len(digests))
    statement = _select_in(schema, size)
    params = statement.bind({f"d{i}": digest for i, digest in enumerate(padded)})
    return list(connector.fetch(statement, params, rows=True))


def get_many(connector: Connector, schema: Schema, codec: Any, keys: list[Any]) -> dict[Any, Any]:
    """``{key: value as stored}`` for the ``keys`` that have rows, in one query per batch."""
    wanted: dict[str, list[Any]] = {}
    for key in keys:  # equal keys (3 and 3.0) share a digest: each gets the row
        wanted.setdefault(codec.digest(key), []).append(key)
    digests = list(wanted)
    found: dict[Any, Any] = {}
    for start in range(0, len(digests), BATCH):
        for digest, vbytes in _fetch_batch(connector, schema, digests[start : start + BATCH]):
            for key in wanted[digest]:
                found[key] = codec.unpack_value(vbytes, key, digest)
    return found
