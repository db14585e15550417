"""Open any klepto store by its location, whatever its kind: the registry of store kinds.

Every persistent klepto store records what it is inside itself: a ``dir_archive`` in the
settings file ``.klepto`` of its root, the SQL archives in the ``klepto_settings`` table, a
``file_archive`` and the operation store in their record file's metadata, a branching log
in its ``("klepto.tlog", namespace, "meta")`` record, checkpoints in their
``("klepto.cpt", namespace, ...)`` records. :func:`detect` reads only that, so a
location is recognised without being guessed from its name, and :func:`open_store` returns
a :class:`~klepto._store_adapters.Store` with one interface for all of them (``info``,
``keys``, ``get``, ``remove``, ``verify``, ``compact``, ``items``, ``tail``, ``follow``).

Locations are paths (files or directories), SQLAlchemy URLs (``sqlite:///results.db``, a
whole database for ``sql_archive``; ``...?table=NAME`` for a ``sqltable_archive``), and a
``#log=NAMESPACE`` suffix selects the namespace of a log (branching log, checkpoints) inside
an archive.

The registry :data:`KINDS` is an ordered list of :class:`StoreKind`; the first whose
``detect`` accepts a location wins. Adding a backend (say, a Redis archive) is one
:func:`register_kind` call with its detector and opener.

>>> from klepto.archives import dir_archive
>>> results = dir_archive("results", cached=False)
>>> results["x"] = 42
>>> detect("results")
'dir'
>>> with open_store("results") as store:
...     store.get("x"), store.info()["entries"]
(42, 1)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from klepto._store_adapters import Store, UnsupportedOperation
from klepto.errors import KleptoError

__all__ = [
    "KINDS",
    "Location",
    "Store",
    "StoreKind",
    "UnknownStoreError",
    "UnsupportedOperation",
    "detect",
    "open_archive",
    "open_store",
    "register_kind",
]


class UnknownStoreError(KleptoError, ValueError):
    """Nothing klepto recognises is stored at the location."""


@dataclass(frozen=True)
class Location:
    """A parsed location: the text as given, its path or URL, and a log namespace."""

    text: str
    url: str | None = None
    path: str | None = None
    namespace: str | None = None

    @classmethod
    def parse(cls, location: str | os.PathLike[str]) -> Location:
        text = os.fspath(location)
        base, namespace = text, None
        marker = base.rfind("#log=")
        if marker >= 0:
            base, namespace = base[:marker], base[marker + len("#log=") :]
        if "://" in base:
            return cls(text, url=base, namespace=namespace)
        return cls(text, path=os.path.expanduser(base), namespace=namespace)

    @property
    def scheme(self) -> str:
        """The URL scheme without a driver (``'sqlite'``, ``'postgresql'``...), or ``''``."""
        if self.url is None:
            return ""
        return self.url.split("://", 1)[0].split("+", 1)[0].lower()

    @property
    def table(self) -> str | None:
        if self.url is None or "?table=" not in self.url:
            return None
        return self.url.split("?table=", 1)[1]

    def exists(self) -> bool:
        """Whether something is there (a SQLite URL: its file; other URLs: assumed)."""
        if self.url is None:
            return os.path.exists(self.path or "")
        if self.scheme != "sqlite":
            return True
        from sqlalchemy.engine import make_url

        database = make_url(self.url.split("?table=", 1)[0]).database
        return bool(database) and database != ":memory:" and os.path.exists(database)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class StoreKind:
    """One kind of store: how to recognise it, open it, and create a new one.

    ``detect(location)`` must only read what the store records about itself and return
    True when it is of this kind. ``open(location, readonly)`` returns a
    :class:`~klepto._store_adapters.Store`. ``create(location)`` returns a new, empty raw
    archive at the location (None: this kind cannot be a copy's destination). ``suffixes``
    (``'.h5'``) and ``schemes`` (``'redis'``) choose this kind for a location that does not
    exist yet.
    """

    name: str
    description: str
    detect: Callable[[Location], bool]
    open: Callable[[Location, bool], Store]
    create: Callable[[Location], Any] | None = None
    suffixes: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


#: The registered kinds, in detection order (see :func:`register_kind`).
KINDS: list[StoreKind] = []


def register_kind(kind: StoreKind, *, before: str | None = None) -> None:
    """Add (or replace, by name) a store kind; ``before`` puts it ahead of another kind."""
    for i, known in enumerate(KINDS):
        if known.name == kind.name:
            KINDS[i] = kind
            return
    names = [k.name for k in KINDS]
    KINDS.insert(names.index(before) if before in names else len(KINDS), kind)


def kind_named(name: str) -> StoreKind:
    """The registered kind called ``name``."""
    _ensure_registered()
    for kind in KINDS:
        if kind.name == name:
            return kind
    known = ", ".join(k.name for k in KINDS)
    raise ValueError(f"unknown store kind {name!r} (known: {known})")


def _ensure_registered() -> None:
    if not KINDS:
        from klepto import _store_kinds

        _store_kinds.register_builtin_kinds(register_kind)


def detect(location: str | os.PathLike[str] | Location) -> str:
    """The name of the kind of store at ``location`` (read from what the store records).

    Raises :class:`FileNotFoundError` if there is nothing there and
    :class:`UnknownStoreError` if what is there is not a klepto store.
    """
    return _detect(_as_location(location)).name


def _as_location(location: str | os.PathLike[str] | Location) -> Location:
    return location if isinstance(location, Location) else Location.parse(location)


def _detect(where: Location) -> StoreKind:
    _ensure_registered()
    if not where.exists():
        raise FileNotFoundError(f"{where}: no such file or directory")
    # A '#log=NS' location names a log inside an archive: only log kinds may answer.
    candidates = [k for k in KINDS if where.namespace is None or k.extra.get("namespaced")]
    for kind in candidates:
        if kind.detect(where):
            return kind
    if where.namespace is not None:
        raise UnknownStoreError(f"{where}: no log in namespace {where.namespace!r}")
    raise UnknownStoreError(_unknown_message(where))


def _unknown_message(where: Location) -> str:
    from klepto.archives._classic import detect_classic

    base = where.url or where.path or where.text
    try:
        classic = detect_classic(base) if _may_be_classic(where) else None
    except (OSError, ValueError):
        classic = None
    if classic is not None:
        return (
            f"{where} is a classic klepto {classic.kind}_archive: convert it with "
            "'klepto migrate' (klepto.archives.migrate_classic)"
        )
    return f"{where} is not a klepto store (no klepto settings found there)"


def _may_be_classic(where: Location) -> bool:
    """Classic archives are files, directories and SQL databases, never other kinds' URLs."""
    other = (k for k in KINDS if k.name not in ("sql", "sqltable"))
    return where.url is None or not any(where.scheme in k.schemes for k in other)


def open_store(
    location: str | os.PathLike[str] | Location, readonly: bool = True, kind: str | None = None
) -> Store:
    """The store at ``location``, of the kind it records (or ``kind``, skipping detection).

    ``readonly=True`` never takes a store's write lock and never writes.
    """
    where = _as_location(location)
    chosen = kind_named(kind) if kind is not None else _detect(where)
    if kind is not None and not where.exists():
        raise FileNotFoundError(f"{where}: no such file or directory")
    return chosen.open(where, readonly)


def _kind_for_new(where: Location) -> StoreKind:
    _ensure_registered()
    for kind in KINDS:
        if kind.create is None:
            continue
        if where.url is not None and where.scheme in kind.schemes:
            return kind
        if where.path is not None and where.path.lower().endswith(kind.suffixes):
            return kind
    return kind_named("dir")


def open_archive(
    location: str | os.PathLike[str] | Location, *, create: bool = True, kind: str | None = None
) -> Any:
    """A raw archive at ``location`` for writing: the one there, or a new one.

    An existing store must be an archive (not a record file or a log). A new one is of
    ``kind`` if given, else chosen by URL scheme (SQL URLs: ``sqltable_archive`` with
    ``?table=``, else ``sql_archive``) or file name ending (``.h5``/``.hdf5``/``.hdf``: HDF;
    ``.pkl``/``.klepto``: ``file_archive``), else a ``dir_archive``.
    """
    where = _as_location(location)
    exists = where.exists()
    if exists and where.url is not None and kind is None:
        exists = any(k.detect(where) for k in _registered() if k.create is not None)
    if exists and kind is None:
        store = open_store(where, readonly=False)
        archive = getattr(store, "archive", None)
        if archive is None:
            store.close()
            raise UnknownStoreError(f"{where} is a {store.kind}, not an archive")
        return archive
    if not create:
        raise FileNotFoundError(f"{where}: no such archive")
    chosen = kind_named(kind) if kind is not None else _kind_for_new(where)
    if chosen.create is None:
        raise ValueError(f"a {chosen.name} store cannot be created here")
    return chosen.create(where)


def _registered() -> list[StoreKind]:
    _ensure_registered()
    return KINDS
