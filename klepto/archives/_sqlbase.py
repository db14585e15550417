"""The machinery shared by the SQL archives: one table of rows ``(kdigest, kbytes, vbytes)``.

:class:`SqlArchive` implements the archive primitives on a :class:`~._sqlengine.Connector`
(connections), a :class:`~._sqlschema.Schema` (statements) and a :class:`~._sqlcodec.RowCodec`
(rows), and opens lazily: the engine, the settings and the statements are made on first use,
so an unpickled archive costs nothing until it is used. SQLAlchemy is imported then too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from klepto._canonical import stable_hash
from klepto.archives._base import Archive
from klepto.archives._expiry import MISSING, Expiring, live_value

__all__ = ["SqlArchive"]

_BATCH = 500  # rows per executemany round trip in update()/dump()
_OPEN_ATTEMPTS = 3  # concurrent creators can race on server catalogs; retry then


class SqlArchive(Archive):
    """Rows ``(kdigest, kbytes, vbytes)`` in one table; shared by both SQL archive classes."""

    kind: ClassVar[str] = "sql"

    def _setup(self, database: Any, table: str, kwds: dict[str, Any], lazy: bool) -> None:
        from klepto.archives import _sqlcodec, _sqlengine, _sqlschema

        self._url = _sqlschema.database_url(database)
        self._table = _sqlschema.check_identifier(table)
        self._given = _sqlcodec.requested(kwds)
        self._hmac_key = kwds.pop("key", None)
        self._safe = bool(kwds.pop("safe", False))
        synchronous = kwds.pop("synchronous", "NORMAL")
        self._create_database = bool(kwds.pop("create_database", True))
        self._config = kwds
        self._connector = _sqlengine.Connector(self._url, kwds, synchronous)
        self._schema: Any = None
        self._codec: Any = None
        self._stored: dict[str, Any] = {}
        Archive.__init__(self, **self._initial_state())
        if not lazy:
            self._ready()

    # --- identity ------------------------------------------------------------------------
    @property
    def _db(self) -> str:
        """The database URL as shown to people (password hidden)."""
        from klepto.archives._sqlschema import url_text

        return url_text(self._url)

    def _initial_state(self) -> dict[str, Any]:
        serialized = self._given.get("serialized", self._given.get("serializer") != "plain")
        return {
            "serialized": serialized,
            "protocol": self._given.get("protocol"),
            "config": dict(self._config),
        }

    def _where(self) -> str:
        return f"table {self._table} of {self._db}"

    def settings(self) -> dict[str, Any]:
        """The settings recorded in the database for this archive."""
        return dict(self._ready()[2])

    @property
    def engine(self) -> Any:
        """This process's SQLAlchemy engine (for events, inspection and tests)."""
        return self._connector.engine

    # --- opening -------------------------------------------------------------------------
    def _ready(self) -> tuple[Any, Any, dict[str, Any]]:
        """``(schema, codec, settings)``, opening the archive on first use."""
        if self._codec is None:
            self._open()
        return self._schema, self._codec, self._stored

    def _open(self) -> None:
        import sqlalchemy as sa

        from klepto.archives import _sqlcodec, _sqlschema

        self._connect()
        schema = _sqlschema.Schema(self._table, self._connector.dialect)
        try:
            stored = self._read_settings(schema)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            stored = None  # no settings table yet; creating it fails loudly if it was not that
        if stored is None:
            stored = self._create(schema)
        packer = _sqlcodec.open_packer(self.kind, stored, self._given, self._hmac_key, self._safe)
        self.__state__.update(serialized=stored["serialized"], protocol=stored.get("protocol"))
        self._schema, self._stored = schema, stored
        self._codec = _sqlcodec.RowCodec(packer, self._where())

    def _connect(self) -> None:
        """Connect, creating a missing server database (its name is a checked identifier).

        A server that cannot be used raises a one-line ``StoreConnectionError``.
        """
        import sqlalchemy as sa

        from klepto.archives import _sqlserver

        try:
            self._connector.connect()
        except sa.exc.OperationalError as exc:
            if self._connector.backend == "sqlite":
                raise
            if _sqlserver.problem_of(exc) != "database" or not self._create_database:
                raise _sqlserver.connection_error(self._url, exc) from exc
            self._create_missing_database(exc)

    def _create_missing_database(self, missing: Exception) -> None:
        import sqlalchemy as sa

        from klepto.archives import _sqlengine, _sqlserver

        try:
            _sqlengine.create_database(self._url, self._config)
            self._connector.connect()
        except sa.exc.DBAPIError as exc:
            note = " and could not be created"
            raise _sqlserver.connection_error(self._url, missing, note) from exc

    def _read_settings(self, schema: Any) -> dict[str, Any] | None:
        from klepto.archives import _sqlcodec

        rows = self._connector.fetch(
            schema.read_settings,
            schema.read_settings.bind({"lname": self._table.lower()}),
            rows=True,
        )
        for name, _ in rows:
            if name != self._table:
                raise ValueError(
                    f"table {self._table!r} collides with the existing archive table "
                    f"{name!r} (table names differing only in case are refused)"
                )
        return _sqlcodec.decode_settings(rows[0][1]) if rows else None

    def _create(self, schema: Any) -> dict[str, Any]:
        import sqlalchemy as sa

        attempt = 1
        while True:
            try:
                return self._create_once(schema)
            except (sa.exc.IntegrityError, sa.exc.InternalError):
                if attempt == _OPEN_ATTEMPTS:
                    raise  # not a race with another creator after all
                attempt += 1

    def _create_once(self, schema: Any) -> dict[str, Any]:
        from klepto.archives import _sqlcodec

        with self._connector.transaction() as conn:
            for statement in schema.ddl():
                conn.execute(statement)
            stored = self._read_settings(schema)
            if stored is None:
                stored = _sqlcodec.new_settings(self.kind, self._given, self._hmac_key, self._safe)
                values = {"name": self._table, "settings": _sqlcodec.encode_settings(stored)}
                self._connector.execute(conn, schema.insert_settings, values)
        return stored

    # --- backend primitives --------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        if self._closed:  # the base class's checks, inlined: this is the hottest path of all
            self._check_open()
        value = self._get(key)
        if type(value) is Expiring:  # an expiring entry (klepto.archives._policy)
            value = live_value(value, self._timer())
            if value is MISSING:
                raise KeyError(key)
        return value

    def _get(self, key: Any) -> Any:
        if self._codec is None:
            self._open()
        digest = stable_hash(key)  # codec.digest, without a call
        row = self._connector.lookup(self._schema.get, digest)
        if row is None:
            raise KeyError(key)
        return self._codec.unpack_value(row[0], key, digest)

    def _get_many(self, keys: list[Any]) -> dict[Any, Any]:
        """The stored entries of ``keys``, read with one query per batch of keys."""
        if len(keys) == 1:
            return super()._get_many(keys)
        from klepto.archives._sqlbatch import get_many

        schema, codec, _ = self._ready()
        return get_many(self._connector, schema, codec, keys)

    def _contains(self, key: Any) -> bool:
        schema, codec, _ = self._ready()
        params = schema.contains.bind_digest(codec.digest(key))
        return self._connector.fetch(schema.contains, params) is not None

    def _set(self, key: Any, value: Any) -> None:
        schema, codec, _ = self._ready()
        row = codec.row(key, value)  # made before the write lock is taken
        if schema.upsert is not None:
            self._connector.write_one(schema.upsert, row)
        else:
            self._connector.write(lambda conn: self._upsert(conn, schema, [row]))

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        schema, codec, _ = self._ready()
        unique = {row["kdigest"]: row for row in (codec.row(k, v) for k, v in items)}
        # In digest order: concurrent batches then lock shared rows in one order (no deadlock).
        rows = [unique[digest] for digest in sorted(unique)]
        self._connector.write(lambda conn: self._upsert_batches(conn, schema, rows))

    def _upsert_batches(self, conn: Any, schema: Any, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _BATCH):
            self._upsert(conn, schema, rows[start : start + _BATCH])

    def _upsert(self, conn: Any, schema: Any, rows: list[dict[str, Any]]) -> None:
        execute = self._connector.execute
        if schema.upsert is not None:
            execute(conn, schema.upsert, rows if len(rows) > 1 else rows[0])
            return
        for row in rows:  # a dialect without a native upsert: update, else insert
            if execute(conn, schema.update, row).rowcount == 0:
                execute(conn, schema.insert, row)

    def _add(self, key: Any, value: Any) -> bool:
        schema, codec, _ = self._ready()
        row = codec.row(key, value)
        # Retried on a lost connection: a first attempt that did commit makes it False.
        if schema.insert_new is not None:
            return self._connector.write_one(schema.insert_new, row) == 1
        return self._connector.write(lambda conn: self._insert_new(conn, schema, row))

    def _insert_new(self, conn: Any, schema: Any, row: dict[str, Any]) -> bool:
        if self._connector.fetch(schema.contains, schema.contains.bind_digest(row["kdigest"])):
            return False
        self._connector.execute(conn, schema.insert, row)
        return True

    def _delete(self, key: Any) -> None:
        schema, codec, _ = self._ready()
        digest = {"kdigest": codec.digest(key)}
        if self._connector.write_one(schema.delete, digest, retry=False) == 0:
            raise KeyError(key)

    def _keys(self) -> Iterator[Any]:
        schema, codec, _ = self._ready()
        rows = self._connector.fetch(schema.keys, rows=True)
        return iter([codec.unpack_key(kbytes, digest) for digest, kbytes in rows])

    def _len(self) -> int:
        schema, _, _ = self._ready()
        return int(self._connector.fetch(schema.count)[0])

    def _clear(self) -> None:
        schema, _, _ = self._ready()
        self._connector.write_one(schema.clear)

    # --- whole-row operations ------------------------------------------------------------
    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value (atomically: one caller gets it)."""
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        self._check_open()
        schema, codec, _ = self._ready()
        digest = {"kdigest": codec.digest(key)}
        with self._connector.transaction() as conn:
            if schema.pop is not None:
                row = self._connector.execute(conn, schema.pop, digest).first()
            else:
                row = self._connector.fetch(schema.get, schema.get.bind(digest))
                if row is not None:
                    self._connector.execute(conn, schema.delete, digest)
            # Decoded inside the transaction: a damaged value is not deleted.
            stored = MISSING if row is None else codec.unpack_value(row[0], key, digest["kdigest"])
        return self._popped(key, stored, default)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return some ``(key, value)``; ``KeyError`` when empty."""
        self._check_open()
        schema, codec, _ = self._ready()
        while True:
            row = self._connector.fetch(schema.first)
            if row is None:
                raise KeyError("popitem(): archive is empty")
            key = codec.unpack_key(row[1], row[0])
            value = self.pop(key, _EMPTY)
            if value is not _EMPTY:  # else another writer took it first: try the next
                return key, value

    def _stored_items(self) -> dict[Any, Any]:
        """Every entry as stored, read with one query."""
        self._check_open()
        schema, codec, _ = self._ready()
        rows = self._connector.fetch(schema.rows, rows=True)
        out = {}
        for digest, kbytes, vbytes in rows:
            key = codec.unpack_key(kbytes, digest)
            out[key] = codec.unpack_value(vbytes, key, digest)
        return out

    def _raw_rows(self) -> list[tuple[Any, Any, Any]]:
        schema, _, _ = self._ready()
        return list(self._connector.fetch(schema.rows, rows=True))

    def _put_raw_rows(self, rows: list[tuple[Any, Any, Any]]) -> None:
        schema, _, _ = self._ready()
        values = [
            {"kdigest": d, "kbytes": bytes(k), "vbytes": bytes(v)} for d, k, v in sorted(rows)
        ]
        if not values:
            return
        self._connector.write(lambda conn: self._upsert_batches(conn, schema, values))

    # --- size accounting and locks (see klepto.archives._policy) ---------------------------
    def _entry_sizes(self) -> list[tuple[Any, int, str]]:
        """``(None, bytes, kdigest)`` of every row: rows have no write time."""
        from klepto.archives._sqlsize import entry_sizes

        schema, _, _ = self._ready()
        return entry_sizes(self._connector, schema)

    def _entry_handle(self, key: Any) -> str:
        _, codec, _ = self._ready()
        return codec.digest(key)  # type: ignore[no-any-return]

    def _evict_entry(self, handle: Any) -> None:
        schema, _, _ = self._ready()
        self._connector.write_one(schema.delete, {"kdigest": handle}, retry=False)

    def _lock_path(self) -> str | None:
        """SQLite files: ``<database>.klepto-locks``; servers: None (see :meth:`lock`)."""
        if self._connector.backend != "sqlite" or self._is_memory():
            return None
        return f"{self._url.database}.klepto-locks"

    def lock(self, key: Any) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on ``key``, shared by every process and host using this table.

        PostgreSQL: a session advisory lock; MariaDB/MySQL: ``GET_LOCK``; SQLite files: a
        byte of ``<database>.klepto-locks`` (see ``Archive.lock``). A holder that dies
        releases its locks (the server ends its session, or the OS its file lock).
        """
        from klepto.archives._sqlserver import LOCKING_BACKENDS, ServerKeyLocks

        if self._connector.backend not in LOCKING_BACKENDS:
            return super().lock(key)
        locks = self._key_locks
        if locks is None:
            # Not the URL: hosts may name the server differently, and must agree on ids.
            scope = f"{self._url.database}|{self._table}"
            locks = self._key_locks = ServerKeyLocks(self._connector, scope)  # type: ignore[assignment]
        return locks.hold(key)  # type: ignore[union-attr]

    @property
    def locks_processes(self) -> bool:
        """Whether :meth:`lock` excludes other processes (and hosts, on a server)."""
        from klepto.archives._sqlserver import LOCKING_BACKENDS

        return self._connector.backend in LOCKING_BACKENDS or self._lock_path() is not None

    # --- lifecycle -----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlArchive]:
        """All writes inside the block commit together or not at all (a database transaction).

        Other threads of this process wait; on SQLite other processes' writers wait too.
        """
        self._check_open()
        self._ready()
        with self._connector.transaction():
            yield self

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``archive[key]``, storing ``default`` first if missing (in one transaction)."""
        with self.transaction():
            try:
                return self._value(self._live(key))
            except KeyError:
                self._set(key, self._wrap(default))
                return default

    def _reopen_kwds(self) -> dict[str, Any]:
        kwds: dict[str, Any] = dict(self._config)
        kwds.update(self._given)
        if self._codec is not None:
            stored = self._stored
            kwds.update({k: stored[k] for k in ("serialized", "serializer", "codec")})
            if stored.get("protocol") is not None:
                kwds["protocol"] = stored["protocol"]
        if self._hmac_key is not None:  # a key given in code travels with the pickle
            kwds["key"] = self._hmac_key
        kwds.update(safe=self._safe, synchronous=self._connector.synchronous)
        if not self._create_database:
            kwds["create_database"] = False
        return kwds

    def _is_memory(self) -> bool:
        from klepto.archives._sqlschema import is_memory

        return is_memory(self._url)

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference: location and settings. An in-memory database has no location, so
        # its rows travel instead.
        rows = self._raw_rows() if self._is_memory() and not self._closed else None
        return (_rebuild, (type(self), self._location(), self._reopen_kwds(), rows))

    def _location(self) -> tuple[Any, ...]:
        from klepto.archives._sqlschema import url_text

        return (url_text(self._url, hide_password=False), self._table)

    def _copy_to(self, duplicate: SqlArchive) -> SqlArchive:
        same = duplicate._location() == self._location() and not self._is_memory()
        if not same:
            duplicate._put_raw_rows(self._raw_rows())
        return duplicate

    def _drop_tables(self) -> None:
        schema, _, _ = self._ready()
        with self._connector.transaction() as conn:
            conn.execute(schema.drop_data())
            self._connector.execute(conn, schema.delete_settings, {"name": self._table})
            if self._connector.fetch(schema.count_settings)[0] == 0:
                conn.execute(schema.drop_settings())

    def _drop_database(self) -> None:
        from klepto.archives import _sqlengine, _sqlitefile

        self.close()
        if self._connector.backend == "sqlite":
            if not self._is_memory():
                _sqlitefile.remove_sqlite_file(self._url.database)  # type: ignore[arg-type]
                self._remove_lock_file()
        else:
            _sqlengine.drop_database(self._url, self._config)

    def close(self) -> None:
        """Close this process's connections; later use raises ``ArchiveClosedError``."""
        self._connector.close()
        super().close()


_EMPTY = object()


def _rebuild(cls: type, location: tuple[Any, ...], kwds: dict[str, Any], rows: Any) -> SqlArchive:
    archive = cls.__new__(cls)  # type: ignore[call-overload]
    database, table = location
    archive._setup(database, table, dict(kwds), lazy=rows is None)
    if rows:
        archive._put_raw_rows(rows)
    return archive  # type: ignore[no-any-return]
