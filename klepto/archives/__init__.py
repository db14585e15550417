"""Archives: dict-like stores that caches spill into and that reload in a new process.

Every factory has the classic signature ``X(name=None, dict=None, cached=True, **kwds)``
and returns the raw backend (``cached=False``) or a :class:`cache` in front of it.

Only the in-memory archives and the :class:`cache` front are loaded with the package: the
memoizing decorators need them, and nothing else. Every other backend (file, directory,
HDF, SQL, Redis) and the maintenance helpers load on first use of their name (PEP 562),
so a program that never names ``sql_archive`` never imports the SQL code. The factory
built on first use is kept in the module, so ``klepto.archives.file_archive`` is the same
class every time (``isinstance`` and pickling by reference rely on that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from klepto.archives import memory as _memory
from klepto.archives._base import Archive as archive
from klepto.archives._cached import cache
from klepto.archives._factory import make_factory

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers
    from klepto.archives import directory as _directory
    from klepto.archives import file as _file
    from klepto.archives import hdf as _hdf
    from klepto.archives import redis as _redis
    from klepto.archives import sql as _sql
    from klepto.archives._factory import ArchiveFactory
    from klepto.archives._frame import _from_frame as _from_frame
    from klepto.archives._frame import _to_frame as _to_frame
    from klepto.archives._maintenance import compact_archive as compact_archive
    from klepto.archives._maintenance import copy_archive as copy_archive
    from klepto.archives._maintenance import verify_archive as verify_archive
    from klepto.archives._migrate import migrate_classic as migrate_classic
    from klepto.archives.directory import dir_archive as _dir_archive
    from klepto.archives.file import file_archive as _file_archive
    from klepto.archives.hdf import hdf_archive as _hdf_archive
    from klepto.archives.hdf import hdfdir_archive as _hdfdir_archive
    from klepto.archives.redis import redis_archive as _redis_archive
    from klepto.archives.sql import _sqlname as _sqlname
    from klepto.archives.sql import sql_archive as _sql_archive
    from klepto.archives.sql import sqltable_archive as _sqltable_archive

    dir_archive: ArchiveFactory
    file_archive: ArchiveFactory
    hdf_archive: ArchiveFactory
    hdfdir_archive: ArchiveFactory
    sqltable_archive: ArchiveFactory
    sql_archive: ArchiveFactory
    redis_archive: ArchiveFactory

__all__ = [
    "cache",
    "dict_archive",
    "dir_archive",
    "file_archive",
    "hdf_archive",
    "hdfdir_archive",
    "null_archive",
    "redis_archive",
    "sql_archive",
    "sqltable_archive",
]

_dict_archive = _memory.dict_archive
_null_archive = _memory.null_archive
dict_archive = make_factory(_dict_archive)
null_archive = make_factory(_null_archive)

#: Public factory -> (module of its backend, backend class, opener function or None).
_LAZY_FACTORIES: dict[str, tuple[str, str, str | None]] = {
    "dir_archive": ("directory", "dir_archive", None),
    "file_archive": ("file", "file_archive", None),
    "hdf_archive": ("hdf", "hdf_archive", None),
    "hdfdir_archive": ("hdf", "hdfdir_archive", None),
    "sqltable_archive": ("sql", "sqltable_archive", "open_sqltable"),
    "sql_archive": ("sql", "sql_archive", "open_sql"),
    "redis_archive": ("redis", "redis_archive", "open_redis"),
}

#: Other lazy name -> (module under ``klepto.archives``, attribute; None for the module).
_LAZY_NAMES: dict[str, tuple[str, str | None]] = {
    "_directory": ("directory", None),
    "_file": ("file", None),
    "_hdf": ("hdf", None),
    "_redis": ("redis", None),
    "_sql": ("sql", None),
    "_sqlname": ("sql", "_sqlname"),
    "_from_frame": ("_frame", "_from_frame"),
    "_to_frame": ("_frame", "_to_frame"),
    "compact_archive": ("_maintenance", "compact_archive"),
    "copy_archive": ("_maintenance", "copy_archive"),
    "verify_archive": ("_maintenance", "verify_archive"),
    "migrate_classic": ("_migrate", "migrate_classic"),
    # the backend classes the factories build, by their classic private names
    **{f"_{name}": (module, backend) for name, (module, backend, _) in _LAZY_FACTORIES.items()},
}


def _submodule(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{name}")


def _lazy_factory(name: str) -> Any:
    module_name, backend_name, opener_name = _LAZY_FACTORIES[name]
    module = _submodule(module_name)
    opener = getattr(module, opener_name) if opener_name else None
    return make_factory(getattr(module, backend_name), opener)


def _lazy_name(name: str) -> Any:
    module_name, attribute = _LAZY_NAMES[name]
    module = _submodule(module_name)
    return module if attribute is None else getattr(module, attribute)


# Hidden from type checkers: they see the names declared above, and a misspelt one is an
# error there rather than ``Any``.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Load a backend, its factory or a helper the first time its name is used."""
        if name not in _LAZY_FACTORIES and name not in _LAZY_NAMES:
            if name.startswith("__"):
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
            # a submodule (``klepto.archives.file``) was an attribute once the package had
            # imported it; keep that working without importing them all up front
            try:
                return _submodule(name)
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        build = _lazy_factory if name in _LAZY_FACTORIES else _lazy_name
        # setdefault is atomic: if two threads build a factory at once, both get the one
        # stored first. No lock of ours is held while a backend imports, so an import
        # that looks up another lazy name cannot deadlock against one.
        return globals().setdefault(name, build(name))


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_FACTORIES, *_LAZY_NAMES})
