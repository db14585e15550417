"""Shared archives on the real servers for the tests of this folder, dropped after each test.

``make_shared(backend, request, suffix)`` returns a new, empty raw archive on PostgreSQL,
MariaDB (a ``sqltable_archive`` in a table of its own) or Redis (a ``redis_archive`` of its
own name); its location string opens it again in any process (``klepto.stores``).
"""

from __future__ import annotations

from typing import Any

from klepto.archives import redis_archive, sqltable_archive
from tests.kinds.redis import drop_redis_archive
from tests.kinds.sql import drop_server_table

BACKENDS = ("postgresql", "mariadb", "redis")
FIXTURES = {"postgresql": "postgres_url", "mariadb": "mariadb_url", "redis": "redis_url"}


def location(backend: str, request: Any, suffix: str = "") -> str:
    """A new location on ``backend``'s server, removed when the test ends."""
    url = request.getfixturevalue(FIXTURES[backend])
    name = request.getfixturevalue("unique_name") + suffix
    if backend == "redis":
        request.addfinalizer(lambda: drop_redis_archive(url, name))
        return f"{url}?name={name}"
    request.addfinalizer(lambda: drop_server_table(url, name))
    return f"{url}?table={name}"


def make_shared(backend: str, request: Any, suffix: str = "", **kwds: Any) -> Any:
    """A new, empty raw archive on ``backend`` (see :func:`location`)."""
    where = location(backend, request, suffix)
    if backend == "redis":
        return redis_archive(where, cached=False, **kwds)
    return sqltable_archive(where, cached=False, **kwds)


def worker_context() -> Any:
    """Processes for workers: forked from a server that imported klepto and the drivers
    once (started as the first worker is), so each worker starts fast, and everything
    they are given is pickled, as with ``spawn``."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["tests.services._workers", "klepto.archives", "sqlalchemy", "psycopg", "pymysql", "redis"]
    )
    return context
