"""Connections for the SQL archives: one engine per process, safe across threads and forks.

A :class:`Connector` owns everything an archive needs to talk to its database in the current
process: the SQLAlchemy engine, a *writer* connection (every write runs in ``begin()``, so
an error rolls back and never leaves the connection in a failed transaction) and, on servers,
a *reader* connection in autocommit mode (a read never holds a transaction open, which would
block other sessions' DDL and pin old snapshots on MariaDB). SQLite reads use the writer's
connection outside any transaction, which is autocommit there.

SQLite set-up (see :mod:`~klepto.archives._sqlitefile`): WAL journal, ``synchronous=NORMAL``
by default (a process crash loses nothing that was acknowledged; a power cut can lose the
last commits, ``synchronous='FULL'`` prevents that), a 60 s busy timeout, ``BEGIN IMMEDIATE``
for every transaction so that writers queue on the database lock instead of failing when a
read turns into a write, and reads through a memory map. A single-statement write
(:meth:`Connector.write_one`) goes to the driver directly, behind a write gate; so does a
single-key read (:meth:`Connector.lookup`), which holds no transaction between reads.

A child process never touches the connections it inherited (SQLite and the server drivers
forbid it): the connector notices the fork (a counter bumped by ``os.register_at_fork``),
keeps the inherited objects referenced so that their finalizers never run in the child, and
builds a fresh engine lazily. Threads share one connection per process under a lock.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from klepto.archives import _sqlitefile
from klepto.archives._sqlschema import Compiled, check_identifier, is_memory
from klepto.errors import CorruptArchiveError, ReadOnlyStoreError

__all__ = ["Connector", "create_database", "drop_database"]

log = logging.getLogger("klepto.archives.sql")
_T = TypeVar("_T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SQLITE_BUSY_SECONDS = 60.0
_DEADLOCK_ATTEMPTS = 8  # writes rolled back to break a deadlock run again this many times
# Objects inherited across fork(): referenced forever so the child never closes them.
_INHERITED: list[Any] = []
# Bumped in every forked child, so "is this state from this process?" costs no system call
# (getpid() is one, and it sits on every read's path).
_FORKS = [0]
# Serialises opening engines (rare); replaced in a child, where a thread of the parent may
# have held it at the fork.
_START_LOCK = threading.Lock()


def _forked() -> None:
    global _START_LOCK
    _FORKS[0] += 1
    _START_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forked)


class _ProcessState:
    """What one process holds for one archive location."""

    def __init__(self, engine: Engine, gate: str | None = None) -> None:
        self.fork = _FORKS[0]
        self.engine = engine
        self.gate = _sqlitefile.WriteGate(gate)  # SQLite files only (see write_one)
        self.lock = threading.RLock()
        self.writer: Connection | None = None
        self.reader: Connection | None = None
        # Driver connections for reads, kept at hand (reads are the hot path): outside a
        # transaction, and the writer's inside one. Reset whenever a connection may change.
        self.raw_reader: Any = None
        self.raw_writer: Any = None
        self.cursor: Any = None  # SQLite: the driver cursor of single-key reads (lookup)
        self.depth = 0  # nesting of open transactions (only the lock holder changes it)

    def release(self) -> None:
        """Close the connections and the pool (call in the process that opened them)."""
        for conn in (self.reader, self.writer):
            if conn is not None:
                conn.close()
        self.reader = self.writer = self.raw_reader = self.raw_writer = self.cursor = None
        self.engine.dispose()
        self.gate.close()

    def drop(self, dbapi_conn: Any) -> None:
        """Discard the held connection whose driver connection is ``dbapi_conn``."""
        for attribute in ("reader", "writer"):
            held = getattr(self, attribute)
            if held is not None and held.connection.dbapi_connection is dbapi_conn:
                held.invalidate()
                setattr(self, attribute, None)
        self.raw_reader = self.raw_writer = self.cursor = None


def _release_all(holder: list[_ProcessState]) -> None:
    for state in holder:
        if state.fork == _FORKS[0]:
            state.release()
        else:
            _INHERITED.append(state)
    holder.clear()


class Connector:
    """The engine and connections of one database URL in the current process."""

    def __init__(self, url: URL, config: dict[str, Any], synchronous: str = "NORMAL") -> None:
        if str(synchronous).upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        self.url = url
        self.config = dict(config)
        self.synchronous = str(synchronous).upper()
        self.backend = url.get_backend_name()
        self._holder: list[_ProcessState] = []
        self._finalizer = weakref.finalize(self, _release_all, self._holder)

    # --- per-process state ---------------------------------------------------------------
    def _state(self) -> _ProcessState:
        holder = self._holder
        if holder and holder[0].fork == _FORKS[0]:
            return holder[0]
        with _START_LOCK:
            if holder and holder[0].fork == _FORKS[0]:
                return holder[0]
            if holder:  # forked: leave the parent's connections alone
                _INHERITED.append(holder.pop())
                log.debug("new process %d: opening a fresh engine for %s", os.getpid(), self)
            gate = _sqlitefile.gate_path(self.url.database, is_memory(self.url))
            holder.append(_ProcessState(self._create_engine(), gate))
            return holder[0]

    @property
    def engine(self) -> Engine:
        return self._state().engine

    @property
    def dialect(self) -> sa.engine.Dialect:
        return self._state().engine.dialect

    def _create_engine(self) -> Engine:
        kwds = dict(self.config)
        if self.backend != "sqlite":
            # A pooled connection may have died with a server restart: test it at checkout
            # (held connections are checked out once, so this costs nothing per operation).
            kwds.setdefault("pool_pre_ping", True)
            return sa.create_engine(self.url, **kwds)
        connect_args = dict(kwds.pop("connect_args", {}))
        connect_args.setdefault("timeout", _SQLITE_BUSY_SECONDS)
        connect_args.setdefault("check_same_thread", False)  # our lock serialises use
        if is_memory(self.url):
            kwds.setdefault("poolclass", sa.pool.StaticPool)  # one connection = one database
        else:
            _sqlitefile.create_private_file(self.url.database)
        engine = sa.create_engine(self.url, connect_args=connect_args, **kwds)
        setup = _sqlitefile.on_connect(not is_memory(self.url), self.synchronous)
        event.listen(engine, "connect", setup)
        event.listen(engine, "begin", _sqlitefile.begin_immediate)
        return engine

    def connect(self) -> None:
        """Open this process's read connection now (errors surface here, not later)."""
        state = self._state()
        with state.lock:
            self._read_connection(state)

    def _writer(self, state: _ProcessState) -> Connection:
        writer = state.writer
        if writer is None or writer.closed or writer.invalidated:
            if writer is not None:
                writer.close()  # an invalidated connection: return it to the pool as such
            state.writer = state.engine.connect()
        return state.writer  # type: ignore[return-value]

    def _read_connection(self, state: _ProcessState) -> Any:
        """The DBAPI connection for a read: the writer's inside a transaction or on SQLite."""
        if state.depth:
            return state.raw_writer
        if state.raw_reader is None:
            state.raw_reader = self._open_reader(state)
        return state.raw_reader

    def _open_reader(self, state: _ProcessState) -> Any:
        if self.backend == "sqlite":  # outside BEGIN, SQLite reads are autocommit
            return self._writer(state).connection.dbapi_connection
        if state.reader is None or state.reader.closed or state.reader.invalidated:
            state.reader = state.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return state.reader.connection.dbapi_connection

    # --- transactions and statements -----------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on exit, rolled back on any error; re-entrant."""
        state = self._state()
        with state.lock:
            conn = self._writer(state)
            state.depth += 1
            try:
                if state.depth > 1:  # joined: the outermost block commits or rolls back
                    yield conn
                else:
                    with _corruption_named(self), conn.begin():
                        state.raw_writer = conn.connection.dbapi_connection
                        yield conn
            except BaseException:
                state.raw_reader = None  # the error may have replaced a connection
                raise
            finally:
                state.depth -= 1

    def execute(self, conn: Connection, compiled: Compiled, values: Any = None) -> Any:
        """Run ``compiled`` on ``conn`` once (a dict) or as a batch (a list of dicts)."""
        if isinstance(values, list):
            return conn.exec_driver_sql(compiled.sql, [compiled.bind(v) for v in values])
        params = compiled.bind(values) if values is not None else ()
        return conn.exec_driver_sql(compiled.sql, params)

    def fetch(self, compiled: Compiled, params: Any = None, *, rows: bool = False) -> Any:
        """Run a read with driver-ready ``params``: the first row (or None), or all ``rows``.

        A read outside a transaction that finds its connection dead (the server restarted)
        runs once more on a new connection.
        """
        try:
            return self._fetch(compiled, params, rows)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated or self._state().depth:
                raise
        return self._fetch(compiled, params, rows)

    def write(self, work: Callable[[Connection], _T], *, retry: bool = True) -> _T:
        """``work(conn)`` in a write transaction, run again when the server rolled it back.

        A deadlock victim is rolled back for certain, so it runs again (a few times). A lost
        connection (server restart) is retried once on a new one only for idempotent work
        (``retry``): had the connection died at the commit, the first attempt may have been
        applied. Inside an outer transaction nothing is retried.
        """
        from klepto.archives._sqlserver import is_deadlock

        reconnected = False
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except sa.exc.DBAPIError as exc:
                if self._state().depth:
                    raise
                lost = retry and exc.connection_invalidated and not reconnected
                if not (lost or (is_deadlock(exc) and attempt < _DEADLOCK_ATTEMPTS)):
                    raise
                reconnected = reconnected or lost
                log.warning(
                    "%s: %s; writing again", self, "lost the connection" if lost else "deadlock"
                )
                time.sleep(random.uniform(0, 0.01 * attempt))  # desynchronise the contenders
        raise AssertionError("unreachable: the last attempt returns or raises")

    def write_one(
        self, compiled: Compiled, values: dict[str, Any] | None = None, *, retry: bool = True
    ) -> int:
        """Run one statement in its own write transaction; its rowcount.

        On SQLite the statement goes straight to the driver, behind the write gate (see
        :mod:`~klepto.archives._sqlitefile`: this is what concurrent writers spend their
        time on). Elsewhere, and inside an outer transaction (joined), it is :meth:`write`.
        """
        if self.backend == "sqlite":
            state = self._state()
            with state.lock:
                if not state.depth:  # else this thread is inside a transaction: join it
                    params = () if values is None else compiled.bind(values)
                    return self._sqlite_write(state, compiled, params)
        result = self.write(lambda conn: self.execute(conn, compiled, values), retry=retry)
        return int(result.rowcount)

    def _sqlite_write(self, state: _ProcessState, compiled: Compiled, params: Any) -> int:
        dbapi_conn = self._read_connection(state)  # the writer's, outside any transaction
        try:
            with state.gate:
                return _sqlitefile.write_once(dbapi_conn, compiled.sql, params)
        except BaseException as exc:
            if _sqlitefile.in_transaction(dbapi_conn):
                log.warning("could not roll back a failed write; reconnecting on next use")
                state.drop(dbapi_conn)  # closing it rolls the transaction back
            if isinstance(exc, state.engine.dialect.loaded_dbapi.Error):
                raise self._wrap(state, exc, compiled.sql, dbapi_conn, None) from exc
            raise

    def lookup(self, compiled: Compiled, digest: str) -> Any:
        """The row (or None) of ``compiled``, whose one parameter is a key's digest.

        A single-key read, the hottest path of all. On SQLite it goes to the driver's
        connection with no more work than the lock: the driver keeps the prepared statement
        (its statement cache is keyed by the SQL text), and in autocommit the read
        transaction ends when the statement finishes, so the next read sees what other
        processes committed since. Elsewhere it is :meth:`fetch`.
        """
        params = compiled.bind_digest(digest)
        if self.backend != "sqlite":
            return self.fetch(compiled, params)
        state = self._state()
        with state.lock:
            # Inside transaction() this is the transaction's connection: its writes are seen.
            dbapi_conn = state.raw_writer if state.depth else state.raw_reader
            if dbapi_conn is None:
                dbapi_conn = self._read_connection(state)
            cursor = state.cursor
            if cursor is None or cursor.connection is not dbapi_conn:
                cursor = state.cursor = dbapi_conn.cursor()
            try:
                return cursor.execute(compiled.sql, params).fetchone()
            except state.engine.dialect.loaded_dbapi.Error as exc:
                # A failed SELECT opens no transaction (the driver resets the statement);
                # inside transaction() the error rolls the transaction back on its way out.
                error = self._wrap(state, exc, compiled.sql, dbapi_conn, None)
                if state.depth or not getattr(error, "connection_invalidated", False):
                    raise error from exc
        return self._fetch(compiled, params, False)  # once more, on a new connection

    def _fetch(self, compiled: Compiled, params: Any, rows: bool) -> Any:
        state = self._state()
        with state.lock:
            dbapi_conn = self._read_connection(state)
            cursor = dbapi_conn.cursor()
            try:
                if params is None:
                    cursor.execute(compiled.sql)
                else:
                    cursor.execute(compiled.sql, params)
                return cursor.fetchall() if rows else cursor.fetchone()
            except state.engine.dialect.loaded_dbapi.Error as exc:
                raise self._wrap(state, exc, compiled.sql, dbapi_conn, cursor) from exc
            finally:
                cursor.close()

    def _wrap(self, state: _ProcessState, exc: Exception, sql: str, conn: Any, cur: Any) -> Any:
        """The SQLAlchemy (or klepto) exception for a driver error; drop dead connections."""
        dialect = state.engine.dialect
        disconnect = dialect.is_disconnect(exc, conn, cur)  # type: ignore[arg-type]
        if disconnect:
            log.warning("lost the connection to %s; reconnecting on next use", self)
            state.drop(conn)
        wrapped = sa.exc.DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=disconnect
        )
        corrupt = _corruption(self, wrapped)
        return corrupt if corrupt is not None else wrapped

    def close(self) -> None:
        """Close this process's connections and pool (idempotent)."""
        self._finalizer()

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=True)


# --- damage ------------------------------------------------------------------------------
_CORRUPT_MESSAGES = ("malformed", "not a database", "disk image")


def _corruption(
    connector: Connector, exc: BaseException
) -> CorruptArchiveError | ReadOnlyStoreError | None:
    """klepto's error for SQLite's "database disk image is malformed" family (damage) and
    for its "readonly database" (a write this process may not make), else None."""
    if connector.backend != "sqlite" or not isinstance(exc, sa.exc.DatabaseError):
        return None
    message = str(getattr(exc, "orig", exc))
    error: CorruptArchiveError | ReadOnlyStoreError
    if any(text in message for text in _CORRUPT_MESSAGES):
        error = CorruptArchiveError(f"SQLite reports damage ({message})", path=str(connector))
    elif "readonly database" in message:
        error = ReadOnlyStoreError(errno.EACCES, f"cannot write: {message}", str(connector))
    else:
        return None
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def _corruption_named(connector: Connector) -> Iterator[None]:
    try:
        yield
    except sa.exc.DatabaseError as exc:
        corrupt = _corruption(connector, exc)
        if corrupt is None:
            raise
        raise corrupt from exc


# --- databases on a server ---------------------------------------------------------------
_MAINTENANCE_DATABASE = {"postgresql": "postgres", "mysql": None, "mariadb": None}
_DATABASE_EXISTS = {
    "postgresql": "SELECT 1 FROM pg_database WHERE datname = :name",
    "mysql": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name",
    "mariadb": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name",
}


def _server_engine(url: URL, config: dict[str, Any]) -> Engine:
    backend = url.get_backend_name()
    if backend not in _MAINTENANCE_DATABASE:
        raise ValueError(f"cannot create or drop databases on {backend!r} servers")
    kwds = {"connect_args": config["connect_args"]} if "connect_args" in config else {}
    server = URL.create(  # url.set(database=None) would keep the database
        url.drivername,
        url.username,
        url.password,
        url.host,
        url.port,
        _MAINTENANCE_DATABASE[backend],
        url.query,
    )
    return sa.create_engine(
        server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool, **kwds
    )


def _database_exists(conn: Connection, backend: str, name: str) -> bool:
    return conn.execute(sa.text(_DATABASE_EXISTS[backend]), {"name": name}).first() is not None


def create_database(url: URL, config: dict[str, Any]) -> bool:
    """``CREATE DATABASE`` for ``url``'s (validated) database if it is missing; True if made."""
    name = check_identifier(url.database, "database name")
    backend = url.get_backend_name()
    engine = _server_engine(url, config)
    try:
        with engine.connect() as conn:
            if _database_exists(conn, backend, name):
                return False
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            try:
                conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            except sa.exc.DBAPIError:
                if not _database_exists(conn, backend, name):  # not a lost race: a real error
                    raise
                return False
            log.info("created database %s", name)
            return True
    finally:
        engine.dispose()


def drop_database(url: URL, config: dict[str, Any]) -> None:
    """``DROP DATABASE IF EXISTS`` for ``url``'s (validated) database."""
    name = check_identifier(url.database, "database name")
    engine = _server_engine(url, config)
    try:
        with engine.connect() as conn:
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
            log.info("dropped database %s", name)
    finally:
        engine.dispose()
