"""Exceptions raised by klepto.

Every integrity failure names the file (or table, or key) and, where it has one, the byte
offset, so that a user can find what is broken without a debugger.
"""

from __future__ import annotations

from typing import Any


class KleptoError(Exception):
    """Base class of klepto's own exceptions."""


class CorruptionError(KleptoError):
    """Stored bytes failed an integrity check (checksum, length, format)."""

    def __init__(
        self, reason: str, *, path: Any = None, offset: int | None = None, key: Any = None
    ) -> None:
        self.reason = reason
        self.path = path
        self.offset = offset
        self.key = key
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = []
        if self.path is not None:
            where.append(f"in {self.path!s}")
        if self.offset is not None:
            where.append(f"at offset {self.offset}")
        if self.key is not None:
            where.append(f"for key {self.key!r}")
        return " ".join([self.reason, *where])


class CorruptRecordError(CorruptionError):
    """A record file (or a log built on one) is damaged before its last valid commit."""


class CorruptArchiveError(CorruptionError):
    """An archive entry or an archive's own files are damaged."""


class UndecodableError(CorruptionError, ValueError):
    """Stored bytes a code-free serializer cannot parse: damaged, or written by another
    serializer (a pickle planted in a store read in safe mode is refused this way)."""


class SignatureError(CorruptionError):
    """A signed payload is unsigned, forged or tampered with; nothing was unpickled."""


class UnsafeDataError(KleptoError):
    """Loading this data would execute code, and the store was opened in safe mode."""


class ArchiveClosedError(KleptoError, ValueError):
    """An operation was attempted on a closed archive or record file."""


class ReadOnlyStoreError(KleptoError, PermissionError):
    """A write to a store this process may only read (its files, directory or database are
    read-only for it): a ``PermissionError``, never a silent no-op."""


class LockedError(KleptoError):
    """Another writer (thread or process) holds the store open for writing."""


class StoreConnectionError(KleptoError, ConnectionError):
    """A database or cache server cannot be used: it is unreachable, it refused the
    credentials, or the database named in the URL does not exist.

    The message is one line naming the URL (password hidden) and the reason; the driver's
    own exception is chained as ``__cause__``.
    """


class MissingDependencyError(KleptoError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(f"{feature} needs the '{package}' package: pip install 'klepto[{extra}]'")
        self.package = package
        self.extra = extra


def require(module: str, extra: str, feature: str) -> Any:
    """Import an optional dependency, or raise an error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".", maxsplit=1)[0], extra, feature) from exc
