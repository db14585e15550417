"""SQL archives on database servers: clear connection errors and cross-process key locks.

Connection errors: a driver's "could not connect" comes in many spellings (psycopg's
message text, PyMySQL's error codes). :func:`connection_error` turns the ones that mean
*the server is unreachable*, *the credentials were refused* or *the database does not
exist* into one-line :class:`~klepto.errors.StoreConnectionError` messages naming the URL
without its password.

Key locks: :class:`ServerKeyLocks` is ``Archive.lock(key)`` for archives on PostgreSQL
(a session-level advisory lock keyed by a 64-bit digest of the table and key) and
MariaDB/MySQL (``GET_LOCK`` on a name made of the same digest). Each held lock has a pooled
connection of its own, in autocommit mode: a session lock belongs to a connection, and the
archive's shared connections must stay free for the reads and writes done under the lock.
The server releases a lock when its holder's connection ends, so a killed process never
leaves a stale lock behind. Threads of one process queue in memory first
(:class:`~klepto._keylocks.KeyLocks`), so a process holds at most one connection per key.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from klepto._canonical import stable_bytes
from klepto._keylocks import KeyLocks
from klepto.errors import StoreConnectionError

__all__ = [
    "LOCKING_BACKENDS",
    "ServerKeyLocks",
    "connection_error",
    "is_deadlock",
    "lock_id",
    "problem_of",
]

log = logging.getLogger("klepto.archives.sql")

# What a failed connection means, recognised in the driver's message (psycopg reports
# text, PyMySQL an error code in front of its text); first match wins.
_PROBLEMS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "database",
        "the database does not exist",
        re.compile(r'database ".*" does not exist|^\(1049,|Unknown database'),
    ),
    (
        "credentials",
        "the server refused the credentials",
        re.compile(
            r"password authentication failed|role \".*\" does not exist|no pg_hba\.conf entry"
            r"|^\(104[45],|Access denied|password is required"
        ),
    ),
    (
        "unreachable",
        "the server is unreachable",
        re.compile(
            r"Connection refused|could not translate host name|Name or service not known"
            r"|No route to host|timeout expired|timed out|^\(200[35],|Can't connect"
            r"|server closed the connection|Lost connection|the database system is"
        ),
    ),
)


def _driver_text(exc: BaseException) -> str:
    """The driver's message on one line."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())


def problem_of(exc: BaseException) -> str | None:
    """``'database'``, ``'credentials'`` or ``'unreachable'`` for a failed connection."""
    text = _driver_text(exc)
    for problem, _, pattern in _PROBLEMS:
        if pattern.search(text):
            return problem
    return None


# Transactions the server rolled back to break a deadlock (or a serialization conflict):
# PostgreSQL SQLSTATEs, MariaDB/MySQL error numbers. Running them again is always safe.
_DEADLOCK_STATES = frozenset({"40P01", "40001"})
_DEADLOCK_CODES = frozenset({1213, 1205})


def is_deadlock(exc: BaseException) -> bool:
    """Whether the server rolled back the transaction to break a deadlock."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _DEADLOCK_STATES:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _DEADLOCK_CODES  # type: ignore[misc]


def connection_error(url: URL, exc: BaseException, note: str = "") -> StoreConnectionError:
    """A one-line :class:`StoreConnectionError` for ``exc``, naming ``url`` without password."""
    problem = problem_of(exc)
    reason = next((text for name, text, _ in _PROBLEMS if name == problem), "connection failed")
    shown = url.render_as_string(hide_password=True)
    error = StoreConnectionError(f"cannot use {shown}: {reason}{note} ({_driver_text(exc)})")
    error.problem = problem  # type: ignore[attr-defined]
    return error


# --- key locks ---------------------------------------------------------------------------
def lock_id(scope: str, key: Any) -> int:
    """The signed 64-bit number that stands for ``key`` of ``scope`` (same in every process)."""
    digest = hashlib.blake2b(scope.encode() + b"\0" + stable_bytes(key), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class _AdvisoryLock:
    """PostgreSQL: ``pg_advisory_lock(bigint)``, waiting as long as it takes."""

    @staticmethod
    def acquire(conn: Any, number: int) -> None:
        conn.exec_driver_sql("SELECT pg_advisory_lock(%(n)s)", {"n": number})

    @staticmethod
    def release(conn: Any, number: int) -> None:
        conn.exec_driver_sql("SELECT pg_advisory_unlock(%(n)s)", {"n": number})


class _NamedLock:
    """MariaDB/MySQL: ``GET_LOCK(name, timeout)``, asked again until it is granted."""

    WAIT_SECONDS = 30  # per GET_LOCK call; the loop waits as long as it takes

    @staticmethod
    def _name(number: int) -> str:
        return f"klepto.{number & 0xFFFFFFFFFFFFFFFF:016x}"  # well under the 64-char limit

    @classmethod
    def acquire(cls, conn: Any, number: int) -> None:
        name = cls._name(number)
        while True:
            row = conn.exec_driver_sql(
                "SELECT GET_LOCK(%(name)s, %(wait)s)", {"name": name, "wait": cls.WAIT_SECONDS}
            ).first()
            if row[0] == 1:
                return
            if row[0] is None:  # an error on the server (e.g. killed): not a timeout
                raise RuntimeError(f"GET_LOCK({name!r}) failed on the server")

    @classmethod
    def release(cls, conn: Any, number: int) -> None:
        conn.exec_driver_sql("SELECT RELEASE_LOCK(%(name)s)", {"name": cls._name(number)})


#: Backend name -> how its sessions lock a key (others fall back to in-process locks).
LOCKING_BACKENDS: dict[str, Any] = {
    "postgresql": _AdvisoryLock,
    "mysql": _NamedLock,
    "mariadb": _NamedLock,
}


class ServerKeyLocks:
    """Per-key locks shared by every process and host using one table on a server."""

    def __init__(self, connector: Any, scope: str) -> None:
        self._connector = connector
        self._scope = scope
        self._kind = LOCKING_BACKENDS[connector.backend]
        self._threads = KeyLocks()

    @contextlib.contextmanager
    def hold(self, key: Any) -> Iterator[None]:
        number = lock_id(self._scope, key)
        with self._threads.hold(key):
            conn = self._connect()
            try:
                self._kind.acquire(conn, number)
                try:
                    yield
                finally:
                    self._release(conn, number)
            finally:
                conn.close()

    def _connect(self) -> Any:
        engine = self._connector.engine
        try:
            conn = engine.connect()
        except sa.exc.OperationalError as exc:
            raise connection_error(engine.url, exc) from exc
        # Autocommit: waiting for or holding a lock never keeps a transaction open.
        return conn.execution_options(isolation_level="AUTOCOMMIT")

    def _release(self, conn: Any, number: int) -> None:
        try:
            self._kind.release(conn, number)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # The session is gone, and the server released its locks with it.
            log.warning("lost the lock connection to %s; its lock went with it", self._connector)
