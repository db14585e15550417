"""SQL archives on SQLAlchemy 2.x Core: ``sqltable_archive`` and ``sql_archive``.

``sqltable_archive`` keeps one archive in one named table; ``sql_archive`` is a mapping over
a whole database URL, kept in the klepto-owned table ``klepto_sql_archive`` (classic klepto
made one table per key; here keys are always row values, so unrelated tables never appear
as keys and hostile or case-colliding keys cannot fail). See :mod:`klepto.archives._sqlschema`
for the layout, :mod:`~klepto.archives._sqlengine` for connections and
:mod:`~klepto.archives._sqlcodec` for rows and settings.

SQLAlchemy is imported when the first SQL archive is created, not with ``klepto``.

>>> from klepto.archives import sqltable_archive
>>> d = sqltable_archive('sqlite:///:memory:?table=results', cached=False)
>>> d[(1, 2)] = 3
>>> d[(1, 2)], list(d)
(3, [(1, 2)])
>>> d.name
'sqlite:///:memory:?table=results'
"""

from __future__ import annotations

from typing import Any

from klepto.archives._sqlbase import SqlArchive

__all__ = ["_sqlname", "open_sql", "open_sqltable", "sql_archive", "sqltable_archive"]

_DEFAULT_TABLE = "memo"
_SQL_ARCHIVE_TABLE = "klepto_sql_archive"


def _sqlname(name: Any) -> tuple[str | None, str | None]:
    """Split a classic archive name into ``(database_url, table)`` (spec 7.8).

    >>> _sqlname('sqlite:///foo.db?table=bar'), _sqlname('bar'), _sqlname(None)
    (('sqlite:///foo.db', 'bar'), (None, 'bar'), (None, None))
    """
    if name is None:
        return None, None
    name = str(name)
    for prefix in ("?table=", "table="):
        if name.startswith(prefix):
            return None, name[len(prefix) :]
    if "/" in name:
        database, found, table = name.partition("?table=")
        return (database, table) if found else (name, None)
    return None, name


class sqltable_archive(SqlArchive):
    """An archive in one SQL table (default ``memo``), one row per key.

    ``database`` is a SQLAlchemy URL (default: in-memory SQLite; a value without ``/`` is a
    SQLite file name). Keywords: ``serialized`` (False: plain values only, no pickling),
    ``protocol``, ``serializer``, ``codec``, ``key`` (HMAC signing key), ``safe``,
    ``synchronous`` (SQLite); any other keyword goes to ``sqlalchemy.create_engine``.
    """

    kind = "sqltable"

    def __init__(self, database: Any = None, table: str | None = None, **kwds: Any) -> None:
        self._setup(database, table or _DEFAULT_TABLE, kwds, lazy=False)

    def _initial_state(self) -> dict[str, Any]:
        return {**super()._initial_state(), "root": self._db, "id": self._table}

    @property
    def name(self) -> str:
        return f"{self._db}?table={self._table}"

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    @property
    def state(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__state__.items() if k != "config"}
        state.update(self.__state__["config"])
        state.update(root=self._db, id=self._table)
        return state

    @state.setter
    def state(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def copy(self, name: str | None = None) -> sqltable_archive:
        """A new archive at ``name`` (default: this one) holding a copy of every row."""
        database, table = _sqlname(name)
        database = database or self._location()[0]
        duplicate = type(self)(database, table or self._table, **self._reopen_kwds())
        return self._copy_to(duplicate)  # type: ignore[return-value]

    def __drop__(self, database: bool = False) -> None:
        """Drop the table (and, with ``database=True``, the database or SQLite file)."""
        self._check_open()
        self._drop_tables()
        if database:
            self._drop_database()
        else:
            self.close()

    def __repr__(self) -> str:
        contents = self.__asdict__() if not self._closed else "<closed>"
        return f"sqltable_archive('{self.name}' {contents}, cached=False)"


class sql_archive(SqlArchive):
    """A mapping over a whole database URL (kept in klepto's own table ``klepto_sql_archive``).

    Same URL handling and keywords as :class:`sqltable_archive`.
    """

    kind = "sql"

    def __init__(self, database: Any = None, **kwds: Any) -> None:
        self._setup(database, _SQL_ARCHIVE_TABLE, kwds, lazy=False)

    def _initial_state(self) -> dict[str, Any]:
        return {**super()._initial_state(), "id": self._db}

    @property
    def state(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__state__.items() if k != "config"}
        state.update(self.__state__["config"])
        return state

    @state.setter
    def state(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def copy(self, name: str | None = None) -> sql_archive:
        """A new archive at database ``name`` (default: this one) holding a copy of every row."""
        duplicate = type(self)(name or self._location()[0], **self._reopen_kwds())
        return self._copy_to(duplicate)  # type: ignore[return-value]

    def __drop__(self, database: bool = False) -> None:
        """Drop klepto's tables; remove the database only if asked (or an emptied SQLite file)."""
        import sqlalchemy as sa

        self._check_open()
        self._drop_tables()
        emptied = (
            self._connector.backend == "sqlite"
            and not self._is_memory()
            and not sa.inspect(self._connector.engine).get_table_names()
        )
        if database or emptied:
            self._drop_database()
        else:
            self.close()


def open_sqltable(name: Any = None, **kwds: Any) -> sqltable_archive:
    """The factory's opener: split ``name`` with :func:`_sqlname`."""
    database, table = _sqlname(name)
    return sqltable_archive(database, table, **kwds)


def open_sql(name: Any = None, **kwds: Any) -> sql_archive:
    """The factory's opener: ``name`` is the database URL."""
    return sql_archive(name, **kwds)
