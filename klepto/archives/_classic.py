"""Readers of the archives classic klepto 0.2.x wrote (spec 7.6-7.9, 7.12).

* ``file``: one file holding the whole dict: a ``dill`` pickle, a JSON object, or Python
  source ``memo = {...}`` (``serialized=False``), read with ``ast.literal_eval`` of the
  right-hand side, never executed.
* ``dir``: ``K_<name>/`` directories, each holding the value (``output.pkl``, in plain dill
  or the fast/``ZF`` format with ``.npy`` side files; ``output.json``; or ``__init__.py``
  source) and, when the key is not the directory name, the key (``input.pkl``,
  ``input.json``, ``__args__.py``).
* ``sqltable``: a table of ``"Kkey"``/``"Kval"`` rows (``Kval`` a dill pickle, or text).
* ``sql``: the table-per-key layout (one table per key; columns ``Kkeyqwg907``/
  ``Kvalmol142``).

A :class:`ClassicArchive` says whether reading it would unpickle (``executes_code``) and
yields its ``(key, value)`` items. Nothing here writes.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from klepto.archives._classicpickle import load_classic_pickle, loads_classic_pickle

__all__ = ["ClassicArchive", "detect_classic", "literal_source"]

_PREFIX = "K_"
_TEMP = _PREFIX + ".I_"  # a classic write in flight: never a key
_VALUE_FILES = ("output.pkl", "output.json", "__init__.py")
_KEY_FILES = ("input.pkl", "input.json", "__args__.py")
_SQL_KEY, _SQL_VALUE = "Kkey", "Kval"
_TABLE_KEY, _TABLE_VALUE = "Kkeyqwg907", "Kvalmol142"


def literal_source(path: str, name: str = "memo") -> Any:
    """The literal assigned to ``name`` in Python source at ``path`` (never executed)."""
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ValueError(f"{path}: not Python source ({exc.msg})") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            try:
                return ast.literal_eval(node.value)
            except ValueError as exc:
                raise ValueError(
                    f"{path}: {name} is not a Python literal; reading it would mean "
                    "executing the file, which klepto never does"
                ) from exc
    raise ValueError(f"{path}: no '{name} = ...' assignment")


@dataclass
class ClassicArchive:
    """A classic archive found at ``location``: its ``kind`` and how its data is stored."""

    kind: str  # 'file', 'dir', 'sqltable' or 'sql'
    location: str
    executes_code: bool
    table: str | None = None

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> list[str]:
        if self.kind == "file":
            return list(_read_file(self.location))
        if self.kind == "dir":
            return _entry_dirs(self.location)
        return _sql_names(self)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every ``(key, value)``; reading pickles runs code: ask the user first."""
        if self.kind == "file":
            yield from _read_file(self.location).items()
        elif self.kind == "dir":
            for name in _entry_dirs(self.location):
                yield _read_entry(os.path.join(self.location, name), name)
        elif self.kind == "sqltable":
            yield from _sqltable_items(self)
        else:
            yield from _table_per_key_items(self)


# --- file_archive -------------------------------------------------------------------------
def _file_format(path: str) -> str | None:
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head[:1] == b"\x80":
        return "pickle"
    stripped = head.lstrip()
    if stripped[:1] == b"{":
        return "json"
    if stripped.startswith((b"memo", b"#", b"import", b"from")):
        return "source"
    return None


def _read_file(path: str) -> dict[Any, Any]:
    form = _file_format(path)
    if form == "pickle":
        memo = load_classic_pickle(path)
    elif form == "json":
        with open(path, encoding="utf-8") as handle:
            memo = json.load(handle)
    else:
        memo = literal_source(path)
    if not isinstance(memo, dict):
        raise ValueError(f"{path}: holds a {type(memo).__name__}, not a classic archive's dict")
    return memo


# --- dir_archive --------------------------------------------------------------------------
def _entry_dirs(root: str) -> list[str]:
    names = []
    with os.scandir(root) as scan:
        for entry in scan:
            classic = entry.name.startswith(_PREFIX) and not entry.name.startswith(_TEMP)
            if classic and entry.is_dir(follow_symlinks=False):
                names.append(entry.name)
    return sorted(names)


def _read_one(folder: str, candidates: tuple[str, ...]) -> tuple[bool, Any]:
    for name in candidates:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".pkl"):
            return True, load_classic_pickle(path)
        if name.endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                return True, json.load(handle)
        return True, literal_source(path)
    return False, None


def _read_entry(folder: str, name: str) -> tuple[Any, Any]:
    found, value = _read_one(folder, _VALUE_FILES)
    if not found:
        raise ValueError(f"{folder}: no value file (one of {', '.join(_VALUE_FILES)})")
    found, key = _read_one(folder, _KEY_FILES)
    return (key if found else name[len(_PREFIX) :]), value


def _dir_pickles(root: str) -> bool:
    for name in _entry_dirs(root):
        folder = os.path.join(root, name)
        if any(os.path.isfile(os.path.join(folder, f)) for f in ("output.pkl", "input.pkl")):
            return True
    return False


# --- SQL ----------------------------------------------------------------------------------
def _engine(url: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _columns(inspector: Any, table: str) -> set[str]:
    return {column["name"] for column in inspector.get_columns(table)}


def _sql_layout(url: str, table: str | None) -> tuple[str, str | None] | None:
    """``('sqltable', table)`` or ``('sql', None)`` if ``url`` holds a classic layout."""
    import sqlalchemy as sa

    engine = _engine(url)
    try:
        inspector = sa.inspect(engine)
        names = inspector.get_table_names()
        classic = [n for n in names if {_SQL_KEY, _SQL_VALUE} <= _columns(inspector, n)]
        if table is not None:
            return ("sqltable", table) if table in classic else None
        if len(classic) == 1:
            return "sqltable", classic[0]
        if len(classic) > 1:
            raise ValueError(
                f"{url} holds several classic tables ({', '.join(sorted(classic))}): "
                "name one with ?table=NAME"
            )
        per_key = [n for n in names if {_TABLE_KEY, _TABLE_VALUE} <= _columns(inspector, n)]
        return ("sql", None) if per_key else None
    finally:
        engine.dispose()


def _sql_names(archive: ClassicArchive) -> list[str]:
    import sqlalchemy as sa

    engine = _engine(archive.location)
    try:
        if archive.kind == "sqltable":
            with engine.connect() as conn:
                query = f'SELECT "{_SQL_KEY}" FROM "{archive.table}"'
                return [row[0] for row in conn.exec_driver_sql(query)]
        inspector = sa.inspect(engine)
        return [
            n
            for n in inspector.get_table_names()
            if {_TABLE_KEY, _TABLE_VALUE} <= _columns(inspector, n)
        ]
    finally:
        engine.dispose()


def _sql_value(raw: Any, where: str) -> Any:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return loads_classic_pickle(bytes(raw), where, directory="")
    return raw  # serialized=False: the text (or number) as stored


def _sqltable_items(archive: ClassicArchive) -> Iterator[tuple[Any, Any]]:
    engine = _engine(archive.location)
    where = f"table {archive.table} of {archive.location}"
    try:
        with engine.connect() as conn:
            query = f'SELECT "{_SQL_KEY}", "{_SQL_VALUE}" FROM "{archive.table}"'
            rows = list(conn.exec_driver_sql(query))
    finally:
        engine.dispose()
    for key, raw in rows:
        yield key, _sql_value(raw, f"{where}, key {key!r}")


def _table_per_key_items(archive: ClassicArchive) -> Iterator[tuple[Any, Any]]:
    engine = _engine(archive.location)
    try:
        with engine.connect() as conn:
            for table in _sql_names(archive):
                query = f'SELECT "{_TABLE_VALUE}" FROM "{table}"'
                row = conn.exec_driver_sql(query).first()
                if row is None:
                    raise ValueError(f"table {table} of {archive.location} holds no value row")
                yield table, _sql_value(row[0], f"table {table} of {archive.location}")
    finally:
        engine.dispose()


def _sql_pickles(url: str, kind: str, table: str | None) -> bool:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if kind == "sqltable":
                query = f'SELECT "{_SQL_VALUE}" FROM "{table}" LIMIT 1'
            else:
                names = _sql_names(ClassicArchive("sql", url, False))
                query = f'SELECT "{_TABLE_VALUE}" FROM "{names[0]}" LIMIT 1'
            row = conn.exec_driver_sql(query).first()
    finally:
        engine.dispose()
    return row is not None and isinstance(row[0], (bytes, bytearray, memoryview))


# --- detection ----------------------------------------------------------------------------
def _is_url(location: str) -> bool:
    return "://" in location


def _detect_sql(location: str, kind: str | None) -> ClassicArchive | None:
    url, _, table = location.partition("?table=")
    layout = _sql_layout(url, table or None)
    if layout is None or (kind is not None and layout[0] != kind):
        return None
    found_kind, found_table = layout
    return ClassicArchive(found_kind, url, _sql_pickles(url, found_kind, found_table), found_table)


def _is_sqlite(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _detect_path(location: str, kind: str | None) -> ClassicArchive | None:
    if os.path.isdir(location) and kind in (None, "dir") and _entry_dirs(location):
        return ClassicArchive("dir", location, _dir_pickles(location))
    if os.path.isfile(location) and _is_sqlite(location):
        return _detect_sql("sqlite:///" + os.path.abspath(location), kind)
    if os.path.isfile(location) and kind in (None, "file"):
        form = _file_format(location)
        if form is not None:
            return ClassicArchive("file", location, form == "pickle")
    return None


def detect_classic(location: str, kind: str | None = None) -> ClassicArchive | None:
    """The classic archive at ``location`` (a path or SQL URL), or None if there is none.

    ``kind`` ('file', 'dir', 'sqltable', 'sql') skips the guessing.
    """
    if _is_url(location):
        return _detect_sql(location, kind)
    return _detect_path(location, kind)
