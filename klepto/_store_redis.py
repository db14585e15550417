"""The ``redis`` store kind of :mod:`klepto.stores`: a ``redis_archive`` named by its URL.

A location is ``redis://[[user]:password@]host:port/db?name=NAME`` (``rediss://`` and
``unix://`` too; without ``?name=`` the archive is ``memo``). It is detected by the settings
the archive records in its namespace; nothing is written while detecting.
"""

from __future__ import annotations

import json
from typing import Any

from klepto._store_adapters import ArchiveStore
from klepto.stores import Location, StoreKind

__all__ = ["REDIS_KIND"]

_SCHEMES = ("redis", "rediss", "unix")


def _split(where: Location) -> tuple[str, str]:
    from klepto.archives._redislayout import DEFAULT_NAME, split_location

    url, name = split_location(where.url or "")
    return url, name or DEFAULT_NAME


def _detect(where: Location) -> bool:
    if where.scheme not in _SCHEMES:
        return False
    from klepto.archives._redislayout import Layout
    from klepto.errors import require

    url, name = _split(where)
    client = require("redis", "redis", "redis_archive").Redis.from_url(url)
    try:
        text = client.get(Layout(name).settings)
    finally:
        client.close()
    if text is None:
        return False
    settings: Any = json.loads(text)
    return isinstance(settings, dict) and settings.get("kind") == "redis"


def _open(where: Location, readonly: bool) -> ArchiveStore:
    from klepto.archives import redis_archive

    url, name = _split(where)
    archive = redis_archive(name, url=url, cached=False)
    return ArchiveStore(where.text, "redis", archive, None, {"name": name})


def _create(where: Location) -> Any:
    from klepto.archives import redis_archive

    url, name = _split(where)
    return redis_archive(name, url=url, cached=False)


REDIS_KIND = StoreKind(
    "redis",
    "redis_archive: one namespace of a Redis database (extra 'redis')",
    _detect,
    _open,
    _create,
    schemes=_SCHEMES,
)
