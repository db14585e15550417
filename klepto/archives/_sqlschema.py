"""Where SQL archives keep their rows: URLs, names, tables and the statements run on them.

Every archive lives in one table of fixed shape; keys are row values, never identifiers::

    <table> (kdigest VARCHAR(32) PRIMARY KEY,  -- stable_hash(key): locates the row
             kbytes  BLOB NOT NULL,            -- the original key, sealed (what iteration returns)
             vbytes  BLOB NOT NULL)            -- the value, sealed by the archive's Packer
    klepto_settings (name VARCHAR(64) PRIMARY KEY, settings TEXT NOT NULL)  -- JSON per table

Table names come from the caller, so they are validated (a plain identifier of at most 63
characters); database names in server URLs likewise. Statements are built once per dialect
with SQLAlchemy Core and kept as SQL text with their parameter order, so that the hot paths
bind parameters straight to the driver. Upserts come from a registry keyed by dialect name;
a dialect's module is imported when a statement for it is first built (a SQLite process
never loads the server dialects, which costs time at start and again at exit).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Dialect, make_url

__all__ = [
    "SETTINGS_TABLE",
    "Compiled",
    "Schema",
    "check_identifier",
    "database_url",
    "is_memory",
    "url_text",
]

SETTINGS_TABLE = "klepto_settings"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DEFAULT_DATABASE = "defaultdb"


def check_identifier(name: Any, what: str = "table name") -> str:
    """``name`` if it is a plain SQL identifier (letters, digits, ``_``; at most 63), else raise."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"invalid SQL {what} {name!r}: use letters, digits and '_' (not first), "
            "at most 63 characters"
        )
    return name


def database_url(database: str | URL | None) -> URL:
    """The SQLAlchemy URL for a classic ``database`` argument (spec 7.8).

    ``None`` or ``'sqlite:///'`` is an in-memory SQLite database; a value without ``/`` is
    a SQLite file name; a server URL without a database part gets ``'defaultdb'``. A server
    database name must be a plain identifier (it may be created with ``CREATE DATABASE``).
    """
    if database is None or database in ("sqlite:///", "sqlite://"):
        return make_url("sqlite:///:memory:")
    if isinstance(database, str) and "/" not in database:
        return make_url(f"sqlite:///{database}")
    if isinstance(database, str) and database.endswith(":/"):
        database += "/"
    url = make_url(database)
    if url.get_backend_name() == "sqlite":
        return url if url.database else url.set(database=":memory:")
    if not url.database:
        url = url.set(database=_DEFAULT_DATABASE)
    check_identifier(url.database, "database name")
    return url


def url_text(url: URL, *, hide_password: bool = True) -> str:
    """``url`` as a string; SQLite paths are shown as given (SQLAlchemy would escape ``:``)."""
    if url.get_backend_name() != "sqlite":
        return url.render_as_string(hide_password=hide_password)
    query = "&".join(
        f"{name}={value}"
        for name, values in url.query.items()
        for value in (values if isinstance(values, tuple) else (values,))
    )
    return f"{url.drivername}:///{url.database or ''}" + (f"?{query}" if query else "")


def is_memory(url: URL) -> bool:
    """True for an in-memory SQLite database (one per engine; it has no location)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class Compiled:
    """A statement rendered for one dialect, with the driver's parameter style."""

    __slots__ = ("_ordered", "names", "sql")

    def __init__(self, statement: Any, dialect: Dialect, *, literal: bool = False) -> None:
        options = {"compile_kwargs": {"literal_binds": True}} if literal else {}
        compiled = statement.compile(dialect=dialect, **options)
        self.sql: str = compiled.string
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if dialect.positional else None
        )
        # itemgetter of two or more names returns the tuple a positional driver wants.
        self._ordered = operator.itemgetter(*self.names) if self.names else None

    def bind(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """Parameters for one execution in the order (or by the names) the driver expects."""
        if self.names is None:
            return values
        if len(self.names) == 1:
            return (values[self.names[0]],)
        return self._ordered(values)  # type: ignore[misc,no-any-return]

    def bind_digest(self, digest: str) -> tuple[Any, ...] | dict[str, Any]:
        """Parameters for a statement whose only parameter is ``kdigest`` (the hot path)."""
        return {"kdigest": digest} if self.names is None else (digest,)


def _blob(dialect_name: str) -> Any:
    if dialect_name not in ("mysql", "mariadb"):
        return sa.LargeBinary()
    from sqlalchemy.dialects import mysql

    return mysql.LONGBLOB()  # BLOB is 64 KiB in MySQL/MariaDB; values can be far larger


def _sqlite_upsert(table: sa.Table) -> Any:
    from sqlalchemy.dialects import sqlite

    stmt = sqlite.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["kdigest"], set_={"vbytes": stmt.excluded.vbytes}
    )


def _postgresql_upsert(table: sa.Table) -> Any:
    from sqlalchemy.dialects import postgresql

    stmt = postgresql.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["kdigest"], set_={"vbytes": stmt.excluded.vbytes}
    )


def _mysql_upsert(table: sa.Table) -> Any:
    from sqlalchemy.dialects import mysql

    stmt = mysql.insert(table)
    return stmt.on_duplicate_key_update(vbytes=stmt.inserted.vbytes)


#: Dialect name -> single-statement upsert (the existing key object is kept, as in a dict).
UPSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": _sqlite_upsert,
    "postgresql": _postgresql_upsert,
    "mysql": _mysql_upsert,
    "mariadb": _mysql_upsert,
}


def _sqlite_insert_new(table: sa.Table) -> Any:
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["kdigest"])


def _postgresql_insert_new(table: sa.Table) -> Any:
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table).on_conflict_do_nothing(index_elements=["kdigest"])


def _mysql_insert_new(table: sa.Table) -> Any:
    from sqlalchemy.dialects import mysql

    # Only a duplicate key can be ignored here: digests and blobs cannot be truncated.
    return mysql.insert(table).prefix_with("IGNORE")


#: Dialect name -> insert-if-absent whose rowcount is 1 when it stored the row, else 0.
INSERTS_IF_ABSENT: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": _sqlite_insert_new,
    "postgresql": _postgresql_insert_new,
    "mysql": _mysql_insert_new,
    "mariadb": _mysql_insert_new,
}


class Schema:
    """The tables of one archive and its statements for one dialect.

    Each statement is compiled on first use: opening an archive compiles only what the
    first operations need (compiling costs far more than running a statement).
    """

    def __init__(self, table: str, dialect: Dialect) -> None:
        self.name = check_identifier(table)
        if table.lower() == SETTINGS_TABLE:
            raise ValueError(f"{table!r} is reserved for klepto's settings")
        self.dialect = dialect
        # Light table clauses for the statements; full Table objects only for DDL.
        self.data = sa.table(table, *(sa.column(c) for c in ("kdigest", "kbytes", "vbytes")))
        self.settings = sa.table(SETTINGS_TABLE, sa.column("name"), sa.column("settings"))

    @cached_property
    def _tables(self) -> tuple[sa.Table, sa.Table]:
        metadata = sa.MetaData()
        data = sa.Table(
            self.name,
            metadata,
            sa.Column("kdigest", sa.String(32), primary_key=True),
            sa.Column("kbytes", _blob(self.dialect.name), nullable=False),
            sa.Column("vbytes", _blob(self.dialect.name), nullable=False),
            sqlite_with_rowid=False,  # one b-tree: lookups and scans read the same pages
        )
        settings = sa.Table(
            SETTINGS_TABLE,
            metadata,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("settings", sa.Text, nullable=False),
        )
        return data, settings

    def compile(self, statement: Any, *, literal: bool = False) -> Compiled:
        return Compiled(statement, self.dialect, literal=literal)

    def _where_digest(self, statement: Any) -> Any:
        return statement.where(self.data.c.kdigest == sa.bindparam("kdigest"))

    # --- reads -----------------------------------------------------------------------------
    @cached_property
    def get(self) -> Compiled:
        return self.compile(self._where_digest(sa.select(self.data.c.vbytes)))

    @cached_property
    def contains(self) -> Compiled:
        return self.compile(self._where_digest(sa.select(self.data.c.kdigest)))

    @cached_property
    def keys(self) -> Compiled:
        return self.compile(sa.select(self.data.c.kdigest, self.data.c.kbytes))

    @cached_property
    def first(self) -> Compiled:
        statement = sa.select(self.data.c.kdigest, self.data.c.kbytes).limit(1)
        return self.compile(statement, literal=True)

    @cached_property
    def rows(self) -> Compiled:
        data = self.data
        return self.compile(sa.select(data.c.kdigest, data.c.kbytes, data.c.vbytes))

    @cached_property
    def count(self) -> Compiled:
        return self.compile(sa.select(sa.func.count()).select_from(self.data))

    # --- writes ----------------------------------------------------------------------------
    @cached_property
    def upsert(self) -> Compiled | None:
        build = UPSERTS.get(self.dialect.name)
        return self.compile(build(self.data)) if build else None  # type: ignore[arg-type]

    @cached_property
    def insert_new(self) -> Compiled | None:
        build = INSERTS_IF_ABSENT.get(self.dialect.name)
        return self.compile(build(self.data)) if build else None  # type: ignore[arg-type]

    @cached_property
    def insert(self) -> Compiled:
        return self.compile(sa.insert(self.data))

    @cached_property
    def update(self) -> Compiled:
        return self.compile(
            self._where_digest(sa.update(self.data)).values(vbytes=sa.bindparam("vbytes"))
        )

    @cached_property
    def delete(self) -> Compiled:
        return self.compile(self._where_digest(sa.delete(self.data)))

    @cached_property
    def pop(self) -> Compiled | None:
        """``DELETE ... RETURNING vbytes`` where the dialect has it (one atomic statement)."""
        if not self.dialect.delete_returning:
            return None
        return self.compile(self._where_digest(sa.delete(self.data)).returning(self.data.c.vbytes))

    @cached_property
    def clear(self) -> Compiled:
        return self.compile(sa.delete(self.data))

    # --- settings --------------------------------------------------------------------------
    @cached_property
    def read_settings(self) -> Compiled:
        settings = self.settings
        statement = sa.select(settings.c.name, settings.c.settings)
        return self.compile(
            statement.where(sa.func.lower(settings.c.name) == sa.bindparam("lname"))
        )

    @cached_property
    def insert_settings(self) -> Compiled:
        return self.compile(sa.insert(self.settings))

    @cached_property
    def delete_settings(self) -> Compiled:
        settings = self.settings
        return self.compile(sa.delete(settings).where(settings.c.name == sa.bindparam("name")))

    @cached_property
    def count_settings(self) -> Compiled:
        return self.compile(sa.select(sa.func.count()).select_from(self.settings))

    # --- DDL -------------------------------------------------------------------------------
    def ddl(self) -> list[Any]:
        """``CREATE TABLE IF NOT EXISTS`` for the settings table and the data table."""
        data, settings = self._tables
        return [
            sa.schema.CreateTable(settings, if_not_exists=True),
            sa.schema.CreateTable(data, if_not_exists=True),
        ]

    def drop_data(self) -> Any:
        return sa.schema.DropTable(self._tables[0], if_exists=True)

    def drop_settings(self) -> Any:
        return sa.schema.DropTable(self._tables[1], if_exists=True)
