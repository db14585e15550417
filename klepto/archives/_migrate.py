"""``migrate_classic``: move the contents of a classic klepto 0.2.x archive into a klepto one."""

from __future__ import annotations

import logging
import os
from typing import Any

from klepto.archives._classic import ClassicArchive, detect_classic
from klepto.archives._maintenance import Progress, _backend, _location
from klepto.errors import UnsafeDataError

__all__ = ["TRUST_MESSAGE", "find_classic", "migrate_classic"]

logger = logging.getLogger("klepto.archives.migrate")

TRUST_MESSAGE = (
    "{location} holds pickles; unpickling runs whatever code the file's author put in it. "
    "Migrate only archives you made yourself or otherwise trust: pass trust=True "
    "(klepto migrate --trust)"
)


def find_classic(old: str | os.PathLike[str], kind: str | None = None) -> ClassicArchive:
    """The classic archive at ``old`` (a path, or a SQL URL with optional ``?table=``)."""
    location = os.fspath(old)
    if "://" not in location and not os.path.exists(location):
        raise FileNotFoundError(f"{location}: no such file or directory")
    found = detect_classic(location, kind)
    if found is None:
        what = f"a classic {kind} archive" if kind else "a classic klepto archive"
        raise ValueError(f"{location} is not {what}")
    return found


def migrate_classic(
    old: str | os.PathLike[str],
    new: Any,
    *,
    trust: bool = False,
    kind: str | None = None,
    progress: Progress | None = None,
    batch: int = 500,
) -> int:
    """Copy every entry of the classic archive at ``old`` into the archive ``new``.

    ``old`` is a classic ``file_archive`` file, ``dir_archive`` directory, or SQL URL
    (``sqltable_archive``: ``...?table=NAME``, found automatically when the database holds
    one classic table; ``sql_archive``'s table-per-key layout). ``kind`` ('file', 'dir',
    'sqltable', 'sql') skips the guessing. Pickled contents are read only with
    ``trust=True`` (:class:`~klepto.errors.UnsafeDataError` otherwise); JSON and literal
    source are read without it. ``new`` is any klepto archive (a ``cache`` front is written
    through its backend); entries go in ``batch`` at a time. Returns the number moved.
    """
    classic = find_classic(old, kind)
    if classic.executes_code and not trust:
        raise UnsafeDataError(TRUST_MESSAGE.format(location=classic.location))
    target = _backend(new)
    total = len(classic)
    moved = 0
    pending: list[tuple[Any, Any]] = []
    for item in classic.items():
        pending.append(item)
        if len(pending) >= batch:
            moved += _flush(target, pending, moved, total, progress)
    if pending:
        moved += _flush(target, pending, moved, total, progress)
    logger.info(
        "migrated %d entries of classic %s archive %s into %s",
        moved,
        classic.kind,
        classic.location,
        _location(target),
    )
    return moved


def _flush(
    target: Any, pending: list[tuple[Any, Any]], done: int, total: int, progress: Any
) -> int:
    count = len(pending)
    target.update(pending)
    pending.clear()
    if progress is not None:
        progress(done + count, total)
    return count
