"""Size accounting of SQL archives for ``size_limit``: the stored bytes of every row.

A row's size is ``length(kbytes) + length(vbytes)``. Rows have no write time: the sizes
come without one (``None``), and ``size_limit`` evicts the rows this archive object did not
write first, then its own writes, oldest first (:mod:`klepto.archives._sizelimit`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from klepto.archives._sqlengine import Connector
from klepto.archives._sqlschema import Schema

__all__ = ["entry_sizes"]

_COMPILED: dict[tuple[str, str], Any] = {}


def entry_sizes(connector: Connector, schema: Schema) -> list[tuple[None, int, str]]:
    """``(None, bytes, kdigest)`` for every row of ``schema``'s table, in primary-key order."""
    statement = _statement(schema)
    rows = connector.fetch(statement, rows=True)
    return [(None, int(size or 0), digest) for digest, size in rows]


def _statement(schema: Schema) -> Any:
    cache_key = (schema.name, schema.dialect.name)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        data = schema.data
        size = sa.func.length(data.c.kbytes) + sa.func.length(data.c.vbytes)
        statement = sa.select(data.c.kdigest, size).order_by(data.c.kdigest)
        compiled = _COMPILED[cache_key] = schema.compile(statement)
    return compiled
