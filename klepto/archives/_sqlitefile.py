"""SQLite files under the SQL archives: connection set-up, and single-statement writes.

Set-up (every new driver connection): WAL journal, ``synchronous`` as configured, reads
through a memory map; the driver stays in autocommit and every write transaction starts
with ``BEGIN IMMEDIATE`` (:func:`begin_immediate`).

A single-key write (:func:`write_once`) is the hot path of concurrent writer processes.
Two things keep it fast when several processes write at once:

- The statement goes to the driver directly, so SQLite's write lock is held for
  ``BEGIN IMMEDIATE``, the statement and ``COMMIT`` only, not for SQLAlchemy's bookkeeping
  as well (everything else, such as packing the row, happens before the lock is taken).
- Writers queue on a :class:`WriteGate` first, an OS file lock beside the database. A
  writer that finds SQLite's lock taken sleeps in SQLite's busy handler for 1, 2, 5, 10 ...
  up to 100 ms at a time, while a write holds the lock for some 20 us: with many writers
  the lock often stands free while every waiter sleeps. A waiter blocked on the gate is
  woken by the kernel the moment the holder lets go. The gate is held only around one
  statement's transaction, never while caller code runs, and its holder waits for SQLite's
  lock at most the busy timeout, so waiting on the gate is bounded too. Writers that do not
  take the gate (multi-statement transactions, other programs) are excluded by SQLite's lock
  as before; the gate only orders the writers that take it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no gate; writers wait in SQLite's busy handler
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "WriteGate",
    "begin_immediate",
    "create_private_file",
    "gate_path",
    "in_transaction",
    "on_connect",
    "remove_sqlite_file",
    "write_once",
]

log = logging.getLogger("klepto.archives.sql")

MMAP_BYTES = 64 << 20
WAL_SWITCH_SECONDS = 30.0  # how long a new connection waits for another one switching to WAL
_GATE_SUFFIX = ".klepto-gate"
_SUFFIXES = ("", "-wal", "-shm", "-journal", _GATE_SUFFIX)


def on_connect(on_disk: bool, synchronous: str) -> Any:
    """The engine's ``connect`` listener that sets up each new driver connection."""

    def setup(dbapi_connection: Any, record: Any) -> None:
        # Autocommit at the driver: we issue BEGIN ourselves (see begin_immediate).
        dbapi_connection.isolation_level = None
        if on_disk:
            cursor = dbapi_connection.cursor()
            try:
                _wal_unless_read_only(cursor)
                cursor.execute(f"PRAGMA synchronous={synchronous}")
                # Reads through a memory map, not a read() system call per page.
                cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            finally:
                cursor.close()

    return setup


def _wal_unless_read_only(cursor: Any) -> None:
    """Switch to WAL, except on a database this process may only read: there the switch
    (a write) fails, yet reading works, and a write then fails with SQLite's own error.

    WAL is a property of the file, so a database already in WAL is left alone. Two
    processes opening a new database at once both try to switch it, and the switch needs
    the file to itself: SQLite then answers "database is locked" at once rather than
    waiting, so the loser looks again (by then the winner has usually switched it)."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc):
                log.debug("read-only SQLite database: keeping its journal mode (%s)", exc)
                return
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def begin_immediate(conn: Any) -> None:
    """The engine's ``begin`` listener.

    IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a
    transaction that reads before it writes can never fail with SQLITE_BUSY mid-way.
    Sent to the driver directly: it is on every write's path.
    """
    conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")


def write_once(dbapi_conn: Any, sql: str, params: Any) -> int:
    """Run ``sql`` in a transaction of its own on a driver connection; its rowcount.

    Committed before this returns; on any error rolled back (or, if even that fails, left
    in its transaction for the caller to discard the connection: see ``in_transaction``).
    """
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute(sql, params)
            rowcount = int(cursor.rowcount)  # before COMMIT resets it
            cursor.execute("COMMIT")
        except BaseException:
            # SQLite itself rolls back after some errors (a full disk, an I/O error).
            if dbapi_conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                    dbapi_conn.execute("ROLLBACK")
            raise
        return rowcount
    finally:
        cursor.close()


def in_transaction(dbapi_conn: Any) -> bool:
    """Whether a driver connection is still inside a transaction (a rollback failed)."""
    try:
        return bool(dbapi_conn.in_transaction)
    except sqlite3.ProgrammingError:  # closed: nothing is left open
        return False


def gate_path(database: str | None, in_memory: bool) -> str | None:
    """The gate file of a SQLite database file, or None where there is no gate."""
    if fcntl is None or in_memory or not database or database.startswith("file:"):
        return None
    return database + _GATE_SUFFIX


class WriteGate:
    """An exclusive OS lock (``flock``) on ``<database>.klepto-gate``, one per process.

    ``with gate:`` holds it. Opened on first use (reading needs no gate file); where the
    file cannot be opened (a read-only directory) the gate does nothing. Made fresh in each
    process: a ``flock`` belongs to an open file, which a forked child would share.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        fd = self._fd
        if fd is None:
            if self._path is None:
                return
            fd = self._fd = self._open(self._path)
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fd = self._fd
        if fd is not None and fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _open(path: str) -> int:
        """The gate's descriptor, or -1 when there is none to be had."""
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # flock needs no write access
            with contextlib.suppress(OSError):
                return os.open(path, flags | os.O_CLOEXEC, 0o600)
        log.debug("no write gate %s: writers wait in SQLite's busy handler", path)
        return -1

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd >= 0:
            os.close(fd)


def create_private_file(path: str | None) -> None:
    """Create a new SQLite file as 0o600 (SQLite gives its -wal/-shm files the same mode)."""
    if not path or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # an existing database keeps its mode
    os.close(fd)


def remove_sqlite_file(path: str) -> None:
    """Delete a SQLite database file, its journal files and its write gate."""
    for suffix in _SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
