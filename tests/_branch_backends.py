"""Archives the branching-log tests run on, and a wrapper archive that counts and fails.

``dict`` (in-process only) always runs; every persistent archive that this tree can import
(``dir_archive``; ``sqltable_archive`` on SQLite) runs too, and is skipped with the reason
when it cannot be imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from klepto.archives._base import Archive

PERSISTENT = ("dir", "sql")
ALL = ("dict", *PERSISTENT)


def unavailable(kind: str) -> str | None:
    """Why ``kind`` cannot run here, or None."""
    import klepto.archives

    factory = {"dict": "dict_archive", "dir": "dir_archive", "sql": "sqltable_archive"}[kind]
    if factory not in getattr(klepto.archives, "__all__", ()):
        return f"klepto.archives has no {factory} in this tree yet"
    if kind == "sql":
        try:
            import sqlalchemy  # noqa: F401
        except ImportError as exc:
            return f"sqltable_archive needs SQLAlchemy ({exc}); pip install 'klepto[sql]'"
    return None


def params(kinds: tuple[str, ...] = ALL) -> list:
    """``pytest.param`` per kind, skipped with the reason where unavailable."""
    out = []
    for kind in kinds:
        reason = unavailable(kind)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(kind, id=kind, marks=marks))
    return out


def location(kind: str, folder: os.PathLike | str) -> str:
    """Where an archive of ``kind`` lives under ``folder`` (a string a child process can use)."""
    if kind == "dir":
        return os.path.join(folder, "logarchive")
    if kind == "sql":
        return f"sqlite:///{os.path.join(folder, 'log.db')}?table=tlog"
    return str(folder)


def open_archive(kind: str, where: str) -> Archive:
    """A new raw archive object over the storage at ``where`` (persistent kinds only)."""
    from klepto import archives

    if kind == "dir":
        return archives.dir_archive(where, cached=False)
    if kind == "sql":
        return archives.sqltable_archive(where, cached=False)
    raise ValueError(f"{kind} is not persistent")


def add_is_atomic_across_processes(kind: str) -> bool:
    """Whether the backend overrides ``Archive._add`` (the default is atomic among threads)."""
    from klepto import archives

    factory = {"dir": "dir_archive", "sql": "sqltable_archive"}[kind]
    backend = getattr(archives, f"_{factory}", None) or getattr(archives, factory)
    return getattr(backend, "_add", Archive._add) is not Archive._add


class Storage:
    """One storage of ``kind``; ``open()`` gives a fresh archive object over it each time
    (for ``dict``, the one in-memory archive, which is all there is to reopen)."""

    def __init__(self, kind: str, folder: os.PathLike | str) -> None:
        self.kind = kind
        self.where = location(kind, folder)
        self._memory: Archive | None = None
        self._opened: list[Archive] = []

    def open(self) -> Archive:
        if self.kind == "dict":
            if self._memory is None:
                from klepto.archives import dict_archive

                self._memory = dict_archive(cached=False)
            return self._memory
        archive = open_archive(self.kind, self.where)
        self._opened.append(archive)
        return archive

    def close(self) -> None:
        for archive in self._opened:
            if not archive.closed:
                archive.close()


class Crash(BaseException):
    """A simulated process death (BaseException, so no ``except Exception`` absorbs it)."""


class Wrapped(Archive):
    """An archive over ``inner`` that counts reads and can fail chosen operations.

    ``fail(op, key)`` returning an exception makes that operation raise it; ``crash_at``
    counts mutating operations (add, set) and raises :class:`Crash` at that one, before it
    reaches ``inner`` or, with ``crash_after=True``, after it did.
    """

    kind = "wrapped"

    def __init__(self, inner: Archive) -> None:
        super().__init__(id=None)
        self.inner = inner
        self.reads = 0
        self.writes = 0
        self.fail: Callable[[str, Any], BaseException | None] = lambda op, key: None
        self.crash_at: int | None = None
        self.crash_after = False

    def _check(self, op: str, key: Any) -> None:
        error = self.fail(op, key)
        if error is not None:
            raise error

    def _mutate(self, op: str, key: Any, action: Callable[[], Any]) -> Any:
        self._check(op, key)
        self.writes += 1
        crash = self.crash_at == self.writes
        if crash and not self.crash_after:
            raise Crash(f"before {op} {key!r}")
        result = action()
        if crash:
            raise Crash(f"after {op} {key!r}")
        return result

    def _get(self, key: Any) -> Any:
        self._check("get", key)
        self.reads += 1
        return self.inner[key]

    def _contains(self, key: Any) -> bool:
        self._check("contains", key)
        self.reads += 1
        return key in self.inner

    def _set(self, key: Any, value: Any) -> None:
        self._mutate("set", key, lambda: self.inner.__setitem__(key, value))

    def _add(self, key: Any, value: Any) -> bool:
        return self._mutate("add", key, lambda: self.inner.add(key, value))

    def _delete(self, key: Any) -> None:
        self._mutate("delete", key, lambda: self.inner.__delitem__(key))

    def _keys(self) -> Iterator[Any]:
        return iter(list(self.inner))
