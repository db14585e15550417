"""Size accounting of SQL archives for ``size_limit``: the stored bytes of every row.

A row's size is ``length(kbytes) + length(vbytes)``. Rows have no write time, so eviction
goes by row order: on SQLite the ``rowid``, which is the order keys were *first* written (an
upsert keeps a key's row); on servers the primary key, an arbitrary but stable order.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from klepto.archives._sqlengine import Connector
from klepto.archives._sqlschema import Schema

__all__ = ["entry_sizes"]

_COMPILED: dict[tuple[str, str], Any] = {}


def entry_sizes(connector: Connector, schema: Schema) -> list[tuple[Any, int, str]]:
    """``(row order, bytes, kdigest)`` for every row of ``schema``'s table."""
    statement = _statement(schema)
    rows = connector.fetch(statement, rows=True)
    return [(order, int(size or 0), digest) for order, (digest, size) in enumerate(rows)]


def _statement(schema: Schema) -> Any:
    cache_key = (schema.name, schema.dialect.name)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        data = schema.data
        size = sa.func.length(data.c.kbytes) + sa.func.length(data.c.vbytes)
        order = sa.literal_column("rowid") if schema.dialect.name == "sqlite" else data.c.kdigest
        statement = sa.select(data.c.kdigest, size).order_by(order)
        compiled = _COMPILED[cache_key] = schema.compile(statement)
    return compiled
