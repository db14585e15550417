"""Whole-archive operations: verify every entry, copy between kinds, compact.

These work on any archive (raw, or the backend of a ``cache`` front) and report progress
through an optional callback ``progress(done, total)`` (``total`` is None when unknown),
called after each entry, so that a command can draw a progress bar while the library
prints nothing.

Verification reads every entry whole, so every checksum (and signature) is checked, and it
walks a backend's storage entry by entry where it can (the files of a ``dir_archive``, the
rows of a SQL table): one damaged entry is reported by location and the walk goes on, so
one report tells everything that is wrong.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from klepto.errors import CorruptArchiveError, CorruptionError

__all__ = ["ArchiveReport", "Progress", "compact_archive", "copy_archive", "verify_archive"]

logger = logging.getLogger("klepto.archives.maintenance")

#: ``progress(done, total)``: called after each unit of work; ``total`` may be None.
Progress = Callable[[int, "int | None"], object]

_Check = Callable[[], object]  # reads one entry whole; raises CorruptionError on damage


@dataclass
class ArchiveReport:
    """What :func:`verify_archive` found: ``problems`` lists ``(where, reason)``."""

    location: str
    kind: str
    checked: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_damaged(self) -> None:
        """Raise :class:`CorruptArchiveError` for the first problem, if any."""
        if self.problems:
            where, reason = self.problems[0]
            extra = len(self.problems) - 1
            more = f" (and {extra} more problems)" if extra else ""
            raise CorruptArchiveError(reason + more, path=where)

    def __str__(self) -> str:
        status = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"{self.location}: {status}: {self.checked} entries checked"]
        lines += [f"  {where}: {reason}" for where, reason in self.problems]
        return "\n".join(lines)


def _backend(archive: Any) -> Any:
    """The storage behind ``archive`` (a cache front's backend, or the archive itself)."""
    from klepto.archives._cached import cache

    return archive.archive if isinstance(archive, cache) else archive


def _location(archive: Any) -> str:
    """How reports name an archive: its absolute path, else its name (a URL for SQL)."""
    where = getattr(archive, "__state__", {}).get("id")
    if isinstance(where, str) and os.path.isabs(where):
        return where
    name = getattr(archive, "name", None)
    return str(name or where or type(archive).__name__)


# --- verify ----------------------------------------------------------------------------------
def _dir_checks(archive: Any) -> list[tuple[str, _Check]]:
    from klepto.archives import _dirio, _dirsettings

    root = archive.__state__["id"]
    checks: list[tuple[str, _Check]] = [
        (os.path.join(root, _dirsettings.SETTINGS_NAME), lambda: _dirsettings.read(root))
    ]
    for name in _dirio.entry_names(root):
        path = os.path.join(root, name)
        where = {"path": path, "digest": name[len(_dirio.ENTRY_PREFIX) :]}
        checks.append((path, lambda p=path, w=where: archive._read(p, w, item=True)))  # type: ignore[misc]
    return checks


def _sql_checks(archive: Any) -> list[tuple[str, _Check]]:
    _, codec, _ = archive._ready()
    checks: list[tuple[str, _Check]] = []
    for digest, kbytes, vbytes in archive._raw_rows():
        where = f"{archive._where()}, row {digest}"

        def check(d: str = digest, k: Any = kbytes, v: Any = vbytes) -> None:
            codec.unpack_value(v, codec.unpack_key(k, d))

        checks.append((where, check))
    return checks


def _generic_checks(archive: Any) -> list[tuple[str, _Check]]:
    location = _location(archive)
    return [(f"{location}, key {key!r}", lambda k=key: archive[k]) for key in list(archive)]  # type: ignore[misc]


def _file_checks(archive: Any) -> list[tuple[str, _Check]]:
    """The record file's every block and checksum, then every live entry read whole."""
    from klepto.records import RecordFile

    path = archive._path

    def whole_file() -> None:
        with RecordFile(path, "r") as records:
            records.verify(raise_errors=True)

    checks: list[tuple[str, _Check]] = [(path, whole_file)]
    try:
        checks += _generic_checks(archive)
    except CorruptionError as exc:  # listing failed: report it after the file's own check

        def listing(error: CorruptionError = exc) -> None:
            raise error

        checks.append((path, listing))
    return checks


#: How to enumerate the entries of each backend kind one by one (``Archive.kind``).
#: A backend kind not listed is checked through its mapping API.
ENTRY_CHECKS: dict[str, Callable[[Any], list[tuple[str, _Check]]]] = {
    "dir": _dir_checks,
    "file": _file_checks,
    "sql": _sql_checks,
    "sqltable": _sql_checks,
}


def verify_archive(archive: Any, *, progress: Progress | None = None) -> ArchiveReport:
    """Read every entry of ``archive`` whole, checking every checksum; never raises for damage.

    Returns an :class:`ArchiveReport` listing each damaged entry by location. A backend can
    provide its own ``verify(progress=...)`` returning such a report; it is used when present.
    """
    backend = _backend(archive)
    own = getattr(backend, "verify", None)
    if callable(own):
        return own(progress=progress)  # type: ignore[no-any-return]
    report = ArchiveReport(_location(backend), backend.kind)
    enumerate_checks = ENTRY_CHECKS.get(backend.kind, _generic_checks)
    try:
        checks = enumerate_checks(backend)
    except CorruptionError as exc:  # the listing itself is damaged: nothing more to walk
        report.problems.append((str(exc.path or report.location), exc.reason))
        return report
    for done, (where, check) in enumerate(checks, 1):
        try:
            check()
        except CorruptionError as exc:
            report.problems.append((where, exc.reason))
        report.checked += 1
        if progress is not None:
            progress(done, len(checks))
    return report


# --- copy ------------------------------------------------------------------------------------
def _batches(source: Any, size: int) -> Iterator[list[tuple[Any, Any]]]:
    batch: list[tuple[Any, Any]] = []
    for key in source:
        batch.append((key, source[key]))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_archive(src: Any, dst: Any, *, progress: Progress | None = None, batch: int = 500) -> int:
    """Copy every entry of ``src`` into ``dst`` (any two archive kinds); return the count.

    A ``cache`` front is read and written through its backend (what is stored). Entries are
    written ``batch`` at a time with ``update()``, so each batch is one transaction where
    the destination has transactions. Keys already in ``dst`` are overwritten.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    source, target = _backend(src), _backend(dst)
    total = len(source)
    copied = 0
    for items in _batches(source, batch):
        target.update(items)
        copied += len(items)
        if progress is not None:
            progress(copied, total)
    logger.info("copied %d entries from %s to %s", copied, _location(source), _location(target))
    return copied


# --- compact ---------------------------------------------------------------------------------
def _compact_dir(archive: Any) -> dict[str, Any]:
    removed = archive.remove_stale_temps()
    return {"removed_temporary_files": removed}


def _compact_sql(archive: Any) -> dict[str, Any]:
    archive._ready()
    if archive._connector.backend != "sqlite" or archive._is_memory():
        return {"vacuumed": False, "reason": "the database server manages its own space"}
    import sqlite3

    # A connection of its own in autocommit mode: VACUUM cannot run inside a transaction,
    # and the archive's engine begins one for every statement.
    connection = sqlite3.connect(archive._url.database, isolation_level=None, timeout=60)
    try:
        connection.execute("VACUUM")
    finally:
        connection.close()
    return {"vacuumed": True}


#: How each backend kind reclaims space (``Archive.kind``); others have nothing to reclaim.
COMPACTORS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "dir": _compact_dir,
    "sql": _compact_sql,
    "sqltable": _compact_sql,
}


def compact_archive(archive: Any, *, progress: Progress | None = None) -> dict[str, Any]:
    """Reclaim space in ``archive``'s storage; return what was done.

    A backend with its own ``compact()`` method is compacted by it; otherwise by the
    registry :data:`COMPACTORS`, and a kind with nothing to reclaim is left alone.
    """
    backend = _backend(archive)
    own = getattr(backend, "compact", None)
    if callable(own):
        result = own()
        done = result if isinstance(result, dict) else {"compacted": True}
    else:
        compactor = COMPACTORS.get(backend.kind)
        done = compactor(backend) if compactor else {"compacted": False}
    if progress is not None:
        progress(1, 1)
    return done
