"""The in-memory ``cache`` front: a real ``dict`` with a backend archive behind it.

Plain dict operations touch memory only, at C speed (the memoizer's hit path is a dict
lookup); ``load``, ``dump`` and ``sync`` move data between memory and the backend. A
``null_archive`` backend means "no archive": ``archived()`` is then False.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from klepto.archives._base import Archive, archive_name, popkeys
from klepto.archives.memory import null_archive

__all__ = ["cache"]


class cache(dict):
    """``cache(*args, archive=null_archive(), **kwds)``: a dict in front of an archive."""

    def __init__(self, *args: Any, archive: Any = None, **kwds: Any) -> None:
        super().__init__(*args, **kwds)
        self.__archive__ = null_archive() if archive is None else archive
        self.__swap__: Any = null_archive()

    # --- the backend ----------------------------------------------------------------------
    @property
    def archive(self) -> Any:
        if not isinstance(self.__archive__, Archive):  # e.g. an object pickled long ago
            self.__archive__ = null_archive()
        return self.__archive__

    @archive.setter
    def archive(self, backend: Any) -> None:
        if not isinstance(self.__swap__, null_archive):
            self.__archive__, self.__swap__ = self.__swap__, null_archive()
        self.__archive__ = backend

    @property
    def __type__(self) -> type:
        """The public factory named like the backend's class (``file_archive``, ...)."""
        from klepto import archives

        return getattr(archives, type(self.archive).__name__)

    def archived(self, *on: Any) -> bool:
        """Whether a real backend is attached; ``archived(False)`` parks it, ``True`` restores."""
        if len(on) > 1:
            raise TypeError(f"archived expected at most 1 argument, got {len(on)}")
        if on:
            self._toggle(bool(on[0]))
        return not isinstance(self.archive, null_archive)

    def _toggle(self, enable: bool) -> None:
        parked = not isinstance(self.__swap__, null_archive)
        if enable:
            if parked:
                self.__archive__, self.__swap__ = self.__swap__, null_archive()
            elif isinstance(self.archive, null_archive):
                raise ValueError("no valid archive has been set")
        elif not isinstance(self.archive, null_archive):
            self.__swap__, self.__archive__ = self.__archive__, null_archive()

    def drop(self) -> None:
        """Detach the backend (nothing is deleted); raises if there is none."""
        self.archived(True)
        self.__archive__ = null_archive()

    def open(self, archive: Any) -> None:
        """Attach ``archive`` as the backend."""
        try:
            self.archived(True)
        except ValueError:
            pass  # nothing parked: simply attach the new backend
        self.archive = archive

    # --- moving data ----------------------------------------------------------------------
    def load(self, *keys: Any) -> None:
        """Copy backend entries into memory: all of them, or just ``keys`` (missing skipped)."""
        backend = self.archive
        if not keys:
            self.update(backend.__asdict__())
            return
        for key in keys:
            try:
                self[key] = backend[key]
            except KeyError:
                continue

    def dump(self, *keys: Any) -> None:
        """Copy memory entries to the backend: all of them, or just ``keys`` present."""
        backend = self.archive
        if not keys:
            backend.update(dict(self))
            return
        present = {key: self[key] for key in keys if key in self}
        if present:
            backend.update(present)

    def sync(self, clear: bool = False) -> None:
        """Make memory and backend agree: the union (memory wins), or memory only (``clear``)."""
        if clear:
            self.archive.clear()
            self.dump()
        else:
            self.dump()
            self.load()

    def popkeys(self, keys: Iterable[Any] | Any, *default: Any) -> Any:
        """Pop several keys; without a default, raise ``KeyError`` before popping any."""
        return popkeys(self, keys, *default)

    def close(self) -> None:
        """Close the backend (a persistent backend writes what it must first)."""
        close = getattr(self.archive, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = archive_name(self.archive)
        label = f"'{name}', " if name else ""
        return f"{type(self.archive).__name__}({label}{dict.__repr__(self)}, cached=True)"

    def __reduce__(self) -> tuple:
        return (_rebuild_cache, (dict(self), self.__archive__, self.__swap__))


def _rebuild_cache(contents: dict, backend: Any, swap: Any) -> cache:
    front = cache(contents, archive=backend)
    front.__swap__ = swap
    return front
