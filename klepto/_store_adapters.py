"""One interface over every kind of store (see :mod:`klepto.stores`): the archive adapter.

A :class:`Store` answers the questions a person asks of stored data -- what is it, what is
in it, is it intact -- the same way for archives, record files and logs. Operations a kind
does not have raise :class:`UnsupportedOperation`. Long operations take ``progress``, a
callback ``progress(done, total)``.
"""

from __future__ import annotations

import datetime
import itertools
import os
from collections.abc import Iterator
from typing import IO, Any

from klepto import _export
from klepto.archives._maintenance import Progress, compact_archive, verify_archive
from klepto.errors import KleptoError

__all__ = ["ArchiveStore", "Store", "UnsupportedOperation", "disk_bytes", "iso_time"]


class UnsupportedOperation(KleptoError, TypeError):
    """The store's kind has no such operation (e.g. ``tail`` of a ``dir_archive``)."""


def iso_time(seconds: float | None) -> str | None:
    """``seconds`` since the epoch as an ISO 8601 UTC time (None stays None)."""
    if not seconds:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def disk_bytes(path: str | None) -> int | None:
    """Bytes a file, or all files under a directory, take (None for no path)."""
    if path is None or not os.path.exists(path):
        return None
    if not os.path.isdir(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue  # removed while we walked
    return total


def latest_mtime(path: str | None) -> float | None:
    """The newest modification time of a file, or of the files in a directory."""
    if path is None or not os.path.exists(path):
        return None
    if not os.path.isdir(path):
        return os.path.getmtime(path)
    newest = os.path.getmtime(path)
    with os.scandir(path) as scan:
        for entry in scan:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
    return newest


class Store:
    """A store opened by :func:`klepto.stores.open_store`; subclasses fill in its operations."""

    kind = ""

    def __init__(self, location: str) -> None:
        self.location = location

    def _unsupported(self, operation: str) -> UnsupportedOperation:
        return UnsupportedOperation(f"'{operation}' is not available for a {self.kind} store")

    def info(self) -> dict[str, Any]:
        """Kind, settings, entry count, bytes on disk, format version, last commit."""
        raise self._unsupported("info")

    def keys(self, limit: int | None = None) -> Iterator[Any]:
        """The keys (or record numbers, or branches), at most ``limit`` of them."""
        raise self._unsupported("ls")

    def get(self, key: Any) -> Any:
        """The value stored under ``key``; ``KeyError`` if there is none."""
        raise self._unsupported("get")

    def remove(self, key: Any) -> None:
        """Delete ``key``; ``KeyError`` if there is none."""
        raise self._unsupported("rm")

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        """Check every checksum: ``{'ok', 'checked', 'problems': [{'where', 'reason'}]}``."""
        raise self._unsupported("verify")

    def compact(self, progress: Progress | None = None) -> dict[str, Any]:
        """Reclaim space; what was done."""
        raise self._unsupported("compact")

    def items(self, progress: Progress | None = None) -> Iterator[tuple[Any, Any]]:
        """Every ``(key, value)``, for export."""
        raise self._unsupported("export")

    def export(
        self, stream: IO[str], format: str = "jsonl", progress: Progress | None = None
    ) -> int:
        """Write the contents to ``stream`` as ``jsonl``, ``py`` or ``csv``; the entry count."""
        return _export.write(self.items(progress), stream, format)

    def tail(self, count: int = 10) -> list[Any]:
        """The last ``count`` records (record files and logs)."""
        raise self._unsupported("tail")

    def follow(
        self, timeout: float | None = None, poll_interval: float = 0.2, start: int | None = None
    ) -> Iterator[Any]:
        """Records as they are committed, until ``timeout`` seconds pass without one.

        ``start`` is the first record (or sequence number) to show; default: the next new one.
        """
        raise self._unsupported("follow")

    def close(self) -> None:
        """Release files and connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} at {self.location}>"


def report(
    location: str, kind: str, checked: int, problems: list[tuple[str, str]]
) -> dict[Any, Any]:
    """The common shape of a verification result."""
    return {
        "location": location,
        "kind": kind,
        "ok": not problems,
        "checked": checked,
        "problems": [{"where": where, "reason": reason} for where, reason in problems],
    }


class ArchiveStore(Store):
    """An archive: ``file``, ``dir``, ``sqltable``, ``sql``, ``hdf``, ``hdfdir``..."""

    def __init__(
        self,
        location: str,
        kind: str,
        archive: Any,
        path: str | None = None,
        extra_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(location)
        self.kind = kind
        self.archive = archive
        self._path = path
        self._extra = extra_info or {}

    def info(self) -> dict[str, Any]:
        settings = self.archive.settings()
        return {
            "kind": self.kind,
            "location": self.location,
            "settings": settings,
            "entries": len(self.archive),
            "bytes": disk_bytes(self._path),
            "format": settings.get("format"),
            "last_commit": iso_time(latest_mtime(self._path)),
            **self._extra,
        }

    def keys(self, limit: int | None = None) -> Iterator[Any]:
        return itertools.islice(iter(self.archive), limit)

    def get(self, key: Any) -> Any:
        return self.archive[key]

    def remove(self, key: Any) -> None:
        del self.archive[key]

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        found = verify_archive(self.archive, progress=progress)
        return report(self.location, self.kind, found.checked, found.problems)

    def compact(self, progress: Progress | None = None) -> dict[str, Any]:
        return compact_archive(self.archive, progress=progress)

    def items(self, progress: Progress | None = None) -> Iterator[tuple[Any, Any]]:
        keys = list(self.archive)
        for done, key in enumerate(keys, 1):
            yield key, self.archive[key]
            if progress is not None:
                progress(done, len(keys))

    def close(self) -> None:
        self.archive.close()
