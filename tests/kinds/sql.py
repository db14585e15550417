"""The SQL archives: sqltable_archive and sql_archive on a SQLite file, PostgreSQL and MariaDB.

Server kinds use a unique table per test (sqltable_archive) or a unique database per test
(sql_archive, whose mapping is a whole database), dropped in teardown.
"""

from __future__ import annotations

import gc

import pytest
import sqlalchemy as sa

from klepto.archives import sql_archive, sqltable_archive
from tests.kinds import Kind


def _server_url(request, fixture: str, database: str | None = None) -> str:
    url = sa.engine.make_url(request.getfixturevalue(fixture))
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def drop_server_database(url: str) -> None:
    """Remove a test database even if stray connections (unclosed clones) still use it."""
    gc.collect()  # closes connections of archives the test dropped without closing
    url = sa.engine.make_url(url)
    backend = url.get_backend_name()
    server = sa.engine.URL.create(
        url.drivername,
        url.username,
        url.password,
        url.host,
        url.port,
        "postgres" if backend == "postgresql" else None,
    )
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    force = " WITH (FORCE)" if backend == "postgresql" else ""
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {url.database}{force}")
    engine.dispose()


def drop_server_table(url: str, table: str) -> None:
    gc.collect()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        settings = sa.inspect(conn).has_table("klepto_settings")
        if settings:
            conn.exec_driver_sql(f"DELETE FROM klepto_settings WHERE name = '{table}'")
    engine.dispose()


def _sqlite_table(tmp_path, request):
    return sqltable_archive(f"sqlite:///{tmp_path}/contract.db?table=memo", cached=False)


def _sqlite_database(tmp_path, request):
    return sql_archive(f"sqlite:///{tmp_path}/contract.db", cached=False)


def _server_table(fixture: str):
    def make(tmp_path, request):
        url = _server_url(request, fixture)
        table = request.getfixturevalue("unique_name")
        request.addfinalizer(lambda: drop_server_table(url, table))
        return sqltable_archive(f"{url}?table={table}", cached=False)

    return make


def _server_database(fixture: str):
    def make(tmp_path, request):
        url = _server_url(request, fixture, "k" + request.getfixturevalue("unique_name"))
        request.addfinalizer(lambda: drop_server_database(url))
        return sql_archive(url, cached=False)

    return make


def _reopen(archive):
    """A second object over the same storage (what an unpickled copy is)."""
    database, table = archive._location()
    if isinstance(archive, sql_archive):
        return sql_archive(database, cached=False)
    return sqltable_archive(f"{database}?table={table}", cached=False)


_SERVICES = [pytest.mark.services]

KINDS = [
    Kind("sqltable-sqlite", _sqlite_table, _reopen),
    Kind("sql-sqlite", _sqlite_database, _reopen),
    Kind("sqltable-postgresql", _server_table("postgres_url"), _reopen, marks=_SERVICES),
    Kind("sql-postgresql", _server_database("postgres_url"), _reopen, marks=_SERVICES),
    Kind("sqltable-mariadb", _server_table("mariadb_url"), _reopen, marks=_SERVICES),
    Kind("sql-mariadb", _server_database("mariadb_url"), _reopen, marks=_SERVICES),
]
