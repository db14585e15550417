"""The built-in store kinds of :mod:`klepto.stores`: how each is recognised and opened.

Each detector reads only what the store records about itself: the magic number and metadata
of a record file, the settings file of a directory, the ``klepto_settings`` table of a
database, the settings record of a branching log. Nothing is created or written while
detecting (a SQLite URL naming a missing file is "not found", never a new empty database).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from klepto._store_adapters import ArchiveStore
from klepto._store_cpt import CheckpointLogStore, holds_checkpoints
from klepto._store_logs import BranchLogStore, OplogStore, ReadOnlyArchive, RecordStore
from klepto.stores import Location, StoreKind, UnknownStoreError

__all__ = ["BUILTIN_KINDS", "register_builtin_kinds", "sql_settings"]

RECORD_MAGIC = b"\x89KRF\r\n\x1a\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TLOG_PREFIX = "klepto.tlog"
_SQL_ARCHIVE_TABLE = "klepto_sql_archive"


def _head(path: str | None, size: int = 16) -> bytes:
    if path is None or not os.path.isfile(path):
        return b""
    with open(path, "rb") as handle:
        return handle.read(size)


# --- record files ----------------------------------------------------------------------------
def _record_metadata(where: Location) -> Any:
    """The decoded metadata of a record file at ``where`` (None: not a record file)."""
    if _head(where.path, len(RECORD_MAGIC)) != RECORD_MAGIC:
        return None
    from klepto.records import RecordFile

    with RecordFile(where.path, "r") as file:  # type: ignore[arg-type]
        raw = file.get_metadata()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _metadata_says(where: Location, field: str, value: str) -> bool:
    meta = _record_metadata(where)
    return isinstance(meta, dict) and meta.get(field) == value


def _is_record_file(where: Location) -> bool:
    return _head(where.path, len(RECORD_MAGIC)) == RECORD_MAGIC


# --- directories -----------------------------------------------------------------------------
def directory_kind(path: str | None) -> str | None:
    """The ``kind`` in a directory's ``.klepto`` settings file ('?' if unreadable)."""
    if path is None or not os.path.isdir(path):
        return None
    settings = os.path.join(path, ".klepto")
    if not os.path.isfile(settings):
        return None
    try:
        with open(settings, encoding="utf-8") as handle:
            return json.load(handle)["settings"]["kind"]  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError):
        return "?"  # damaged: still a klepto directory, for verify to report


# --- SQL -------------------------------------------------------------------------------------
def _sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names (None for in-memory databases)."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return None if database in (None, "", ":memory:") else database


def sql_settings(url: str) -> dict[str, dict[str, Any]]:
    """``{table: settings}`` from a database's ``klepto_settings`` (empty: none there)."""
    import sqlalchemy as sa

    if url.lower().startswith("sqlite"):
        path = _sqlite_file(url)
        if path is None or not os.path.isfile(path):
            raise FileNotFoundError(f"{url}: no such SQLite database file")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("klepto_settings"):
                return {}
            rows = conn.exec_driver_sql("SELECT name, settings FROM klepto_settings").all()
    finally:
        engine.dispose()
    return {name: json.loads(text) for name, text in rows}


def _sql_url(where: Location) -> str | None:
    """The database URL of a location: its URL (without ``?table=``) or a SQLite file path."""
    if where.url is not None:
        return where.url.split("?table=", 1)[0]
    if _head(where.path) == SQLITE_MAGIC:
        return "sqlite:///" + os.path.abspath(where.path or "")
    return None


def _sql_table(where: Location) -> tuple[str, str] | None:
    """``(kind, table)`` of the SQL archive at ``where``, None if there is none."""
    url = _sql_url(where)
    if url is None:
        return None
    recorded = sql_settings(url)
    if where.table is not None:
        found = recorded.get(where.table)
        return (found.get("kind", "sqltable"), where.table) if found else None
    if _SQL_ARCHIVE_TABLE in recorded:
        return "sql", _SQL_ARCHIVE_TABLE
    tables = sorted(recorded)
    if len(tables) > 1:
        raise UnknownStoreError(
            f"{where} holds several archive tables ({', '.join(tables)}): "
            f"add ?table=NAME to the URL"
        )
    return ("sqltable", tables[0]) if tables else None


def _open_sql(where: Location, readonly: bool) -> ArchiveStore:
    from klepto.archives import sql_archive, sqltable_archive

    kind, table = _sql_table(where) or ("sqltable", where.table)
    url = _sql_url(where) or ""
    if kind == "sql":
        archive = sql_archive(url, cached=False)
    else:
        archive = sqltable_archive(f"{url}?table={table}", cached=False)
    path = _sqlite_file(url) if url.lower().startswith("sqlite") else None
    return ArchiveStore(where.text, kind, archive, path, {"table": table})


def _create_sql(where: Location) -> Any:
    from klepto.archives import sql_archive, sqltable_archive

    url = where.url or "sqlite:///" + os.path.abspath(where.path or "")
    if where.table is not None:
        return sqltable_archive(url, cached=False)
    return sql_archive(url, cached=False)


# --- archives by path ------------------------------------------------------------------------
def _open_dir(where: Location, readonly: bool) -> ArchiveStore:
    from klepto.archives import dir_archive

    return ArchiveStore(where.text, "dir", dir_archive(where.path, cached=False), where.path)


def _create_dir(where: Location) -> Any:
    from klepto.archives import dir_archive

    return dir_archive(where.path, cached=False)


def _file_factory() -> Any:
    from klepto import archives

    factory = getattr(archives, "file_archive", None)
    if factory is None:
        raise UnknownStoreError("this klepto has no file_archive")
    return factory


def _open_file(where: Location, readonly: bool) -> ArchiveStore:
    archive = _file_factory()(where.path, cached=False)
    return ArchiveStore(where.text, "file", archive, where.path)


def _create_file(where: Location) -> Any:
    return _file_factory()(where.path, cached=False)


def _open_hdf(where: Location, readonly: bool) -> ArchiveStore:
    from klepto.archives import hdf_archive

    return ArchiveStore(where.text, "hdf", hdf_archive(where.path, cached=False), where.path)


def _create_hdf(where: Location) -> Any:
    from klepto.archives import hdf_archive

    return hdf_archive(where.path, cached=False)


def _open_hdfdir(where: Location, readonly: bool) -> ArchiveStore:
    from klepto.archives import hdfdir_archive

    archive = hdfdir_archive(where.path, cached=False)
    return ArchiveStore(where.text, "hdfdir", archive, where.path)


def _create_hdfdir(where: Location) -> Any:
    from klepto.archives import hdfdir_archive

    return hdfdir_archive(where.path, cached=False)


# --- branching logs --------------------------------------------------------------------------
def _archive_kinds() -> list[StoreKind]:
    from klepto.stores import KINDS

    return [k for k in KINDS if k.create is not None]


def _namespace(where: Location) -> str:
    return where.namespace if where.namespace is not None else "default"


def _underlying(where: Location) -> StoreKind | None:
    base = Location.parse(where.text.rsplit("#log=", 1)[0]) if where.namespace else where
    for kind in _archive_kinds():
        if kind.detect(base):
            return kind
    return None


def _probe_archive(where: Location, probe: Callable[[Any, str], bool]) -> bool:
    """Whether the archive at ``where`` (if it is one) passes ``probe(archive, namespace)``."""
    underlying = _underlying(where)
    if underlying is None:
        return False
    store = underlying.open(where, True)
    try:
        return probe(store.archive, _namespace(where))  # type: ignore[attr-defined]
    finally:
        store.close()


def _holds_tlog(archive: Any, namespace: str) -> bool:
    return (TLOG_PREFIX, namespace, "meta") in archive


def _detect_tlog(where: Location) -> bool:
    return _probe_archive(where, _holds_tlog)


def _archive_for_log(where: Location, readonly: bool) -> tuple[Any, str | None]:
    underlying = _underlying(where)
    if underlying is None:
        raise UnknownStoreError(f"{where} is not an archive holding a log")
    store = underlying.open(where, readonly)
    archive = ReadOnlyArchive(store.archive) if readonly else store.archive  # type: ignore[attr-defined]
    return archive, getattr(store, "_path", None)


def _open_tlog(where: Location, readonly: bool) -> BranchLogStore:
    archive, path = _archive_for_log(where, readonly)
    return BranchLogStore(where.text, archive, _namespace(where), path)


def _open_checkpoint(where: Location, readonly: bool) -> CheckpointLogStore:
    archive, path = _archive_for_log(where, readonly)
    return CheckpointLogStore(where.text, archive, _namespace(where), path)


_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
_SQL_SUFFIXES = (".db", ".sqlite", ".sqlite3")


_NOT_SQL_SCHEMES = ("redis", "rediss", "unix")  # URLs of other kinds: SQLAlchemy has no dialect


def _is_sql_kind(name: str) -> Callable[[Location], bool]:
    return lambda where: (
        where.scheme not in _NOT_SQL_SCHEMES and (_sql_table(where) or ("",))[0] == name
    )


#: klepto's own kinds, in detection order: a log inside an archive before the archive, record
#: files by their metadata before plain record files.
BUILTIN_KINDS = [
    StoreKind(
        "tlog",
        "branching log in an archive (klepto.logs.BranchLog)",
        _detect_tlog,
        _open_tlog,
        extra={"namespaced": True},
    ),
    StoreKind(
        "checkpoint",
        "checkpoints + incremental log (klepto.logs.checkpoint)",
        lambda w: _probe_archive(w, holds_checkpoints),
        _open_checkpoint,
        extra={"namespaced": True},
    ),
    StoreKind(
        "file",
        "file_archive (one record file)",
        lambda w: _metadata_says(w, "kind", "file"),
        _open_file,
        _create_file,
        suffixes=(".pkl", ".klepto"),
    ),
    StoreKind(
        "oplog",
        "operation store (klepto.logs.oplog)",
        lambda w: _metadata_says(w, "format", "klepto.oplog"),
        lambda w, ro: OplogStore(w.text, w.path or ""),
    ),
    StoreKind(
        "records",
        "record file (klepto.records.RecordFile)",
        _is_record_file,
        lambda w, ro: RecordStore(w.text, w.path or ""),
    ),
    StoreKind(
        "dir",
        "dir_archive (one file per key)",
        lambda w: directory_kind(w.path) in ("dir", "?"),
        _open_dir,
        _create_dir,
    ),
    StoreKind(
        "hdf",
        "hdf_archive (one HDF5 file; extra 'hdf')",
        lambda w: _head(w.path, len(HDF5_MAGIC)) == HDF5_MAGIC,
        _open_hdf,
        _create_hdf,
        suffixes=(".h5", ".hdf5", ".hdf"),
    ),
    StoreKind(
        "hdfdir",
        "hdfdir_archive (one HDF5 file per key; extra 'hdf')",
        lambda w: directory_kind(w.path) == "hdfdir",
        _open_hdfdir,
        _create_hdfdir,
    ),
    StoreKind(
        "sqltable",
        "sqltable_archive: one table of a database (SQLite, PostgreSQL, MariaDB)",
        _is_sql_kind("sqltable"),
        _open_sql,
        _create_sql,
        suffixes=_SQL_SUFFIXES,
        schemes=_SQL_SCHEMES,
    ),
    StoreKind(
        "sql",
        "sql_archive: a whole database (SQLite, PostgreSQL, MariaDB)",
        _is_sql_kind("sql"),
        _open_sql,
        _create_sql,
        suffixes=_SQL_SUFFIXES,
        schemes=_SQL_SCHEMES,
    ),
]


def register_builtin_kinds(register: Callable[[StoreKind], None]) -> None:
    """Register klepto's own kinds (:data:`BUILTIN_KINDS`, then Redis), in detection order."""
    from klepto._store_redis import REDIS_KIND

    for kind in [*BUILTIN_KINDS, REDIS_KIND]:
        register(kind)
