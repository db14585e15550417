"""HDF5 archives on h5py (extra ``hdf``): ``hdf_archive`` (one file) and ``hdfdir_archive``.

``hdf_archive`` keeps every entry in one HDF5 file (default ``memo.hdf5``): a dataset per
key, or with ``meta=True`` root attributes (see :mod:`klepto.archives._hdfentry` for the
layout). Every operation opens the file, holds the file's lock (``<file>.lock``, an OS lock
released if its holder dies) for its duration, and closes it: HDF5 files must not be read
while another process writes them. ``update()`` writes all its items in one opening.
``clear()`` and ``compact()`` write a fresh file and move it into place atomically
(HDF5 does not reclaim the space of deleted datasets by itself).

``hdfdir_archive`` keeps one small HDF5 file per key in a directory (default ``memo``):
writes are published with ``os.replace``, so readers need no lock and writers of distinct
keys never wait for each other.

Both check a checksum on every read and raise
:class:`~klepto.errors.CorruptArchiveError` for damage. Without h5py their constructors
raise :class:`~klepto.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from klepto._fs import TEMP_PREFIX, InterProcessLock
from klepto.archives import _dirio, _dirsettings
from klepto.archives._base import Archive
from klepto.archives._hdfentry import (
    SETTINGS_ATTR,
    HdfCodec,
    decode_settings,
    encode_settings,
    resolve_settings,
)
from klepto.errors import require

__all__ = ["hdf_archive", "hdfdir_archive"]

_SUFFIXES = (".hdf5", ".hdf", ".h5")
_ENTRY = re.compile(r"K_[0-9a-f]{32}\.hdf5\Z")


def _h5py() -> Any:
    return require("h5py", "hdf", "HDF archives")


def _asked(
    serialized: Any, protocol: Any, serializer: Any, codec: Any, meta: Any
) -> dict[Any, Any]:
    asked: dict[str, Any] = {}
    if serialized is not None:
        asked["serialized"] = bool(serialized)
    if isinstance(protocol, str):
        serializer = serializer or "json"
    elif protocol is not None:
        asked["protocol"] = int(protocol)
    if serializer is not None:
        asked["serializer"] = serializer
    if codec is not None:
        asked["codec"] = codec
    if meta is not None:
        asked["meta"] = bool(meta)
    return asked


class hdf_archive(Archive):
    """An archive in one HDF5 file (see the module docstring).

    ``serialized=False`` stores values as native HDF5 arrays (numbers, strings, numpy
    arrays); ``meta=True`` keeps entries in root attributes instead of datasets (small
    values). ``protocol``, ``serializer``, ``codec``, ``key`` (HMAC) and ``safe`` as for
    the other archives; the settings are recorded in the file and read back on reopen.
    """

    kind = "hdf"

    def __init__(
        self,
        filename: str | os.PathLike[str] | None = None,
        serialized: bool | None = None,
        *,
        protocol: int | str | None = None,
        meta: bool | None = None,
        serializer: str | None = None,
        codec: str | None = None,
        key: bytes | str | None = None,
        safe: bool = False,
    ) -> None:
        self._h5 = _h5py()
        name = os.fspath("memo.hdf5" if filename is None else filename)
        if not name.endswith(_SUFFIXES):
            name += ".hdf5"
        self._path = os.path.abspath(name)
        super().__init__(id=name)
        self._hmac, self._safe = key, safe
        self._file_lock = InterProcessLock(self._path + ".lock")
        asked = _asked(serialized, protocol, serializer, codec, meta)
        with self._file_lock:
            stored = self._read_settings()
            self._settings = resolve_settings("hdf", stored, asked, key)
            self._codec = HdfCodec(self._settings, key, safe, self._path)
            if stored is None:
                self._write_empty(self._path)
        self.__state__.update(
            serialized=self._settings["serialized"],
            protocol=self._settings["protocol"],
            meta=self._settings["meta"],
        )

    # --- files --------------------------------------------------------------------------
    def _read_settings(self) -> dict[str, Any] | None:
        if not os.path.exists(self._path):
            return None
        with self._h5.File(self._path, "r") as handle:
            text = handle.attrs.get(SETTINGS_ATTR)
        if text is None:
            raise ValueError(f"{self._path} is an HDF5 file without klepto settings")
        return decode_settings(text, self._path)

    def _write_empty(self, path: str) -> None:
        with self._h5.File(path, "w", libver="latest") as handle:
            handle.attrs[SETTINGS_ATTR] = encode_settings(self._settings)

    @contextlib.contextmanager
    def _open(self, mode: str = "r") -> Iterator[Any]:
        self._check_open()
        with self._file_lock, self._h5.File(self._path, mode, libver="latest") as handle:
            yield handle

    # --- backend primitives ---------------------------------------------------------------
    def _get(self, key: Any) -> Any:
        with self._open() as handle:
            digest = self._codec.digest(key)
            if not self._codec.has(handle, digest):
                raise KeyError(key)
            return self._codec.read_value(handle, digest, key)

    def _set(self, key: Any, value: Any) -> None:
        self._set_many([(key, value)])

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        with self._open("a") as handle:
            for key, value in items:
                self._codec.write(handle, key, value)

    def _delete(self, key: Any) -> None:
        with self._open("a") as handle:
            digest = self._codec.digest(key)
            if not self._codec.has(handle, digest):
                raise KeyError(key)
            self._codec.delete(handle, digest)

    def _contains(self, key: Any) -> bool:
        with self._open() as handle:
            return self._codec.has(handle, self._codec.digest(key))

    def _keys(self) -> Iterator[Any]:
        with self._open() as handle:
            codec = self._codec
            return iter([codec.read_key(handle, d) for d in codec.digests(handle)])

    def _len(self) -> int:
        with self._open() as handle:
            return len(self._codec.digests(handle))

    def _add(self, key: Any, value: Any) -> bool:
        with self._open("a") as handle:
            if self._codec.has(handle, self._codec.digest(key)):
                return False
            self._codec.write(handle, key, value)
            return True

    def _stored_items(self) -> dict[Any, Any]:
        """Every entry, read in one opening of the file."""
        with self._open() as handle:
            codec, contents = self._codec, {}
            for digest in codec.digests(handle):
                key = codec.read_key(handle, digest)
                contents[key] = codec.read_value(handle, digest, key)
            return contents

    def _clear(self) -> None:
        with self._file_lock:
            self._replace_with({})

    def compact(self) -> None:
        """Rewrite the file with only its live entries (HDF5 keeps deleted space)."""
        self._check_open()
        with self._file_lock:
            self._replace_with(self._stored_items())

    def _replace_with(self, contents: dict[Any, Any]) -> None:
        fd, temp = tempfile.mkstemp(
            prefix=TEMP_PREFIX, suffix=".hdf5", dir=os.path.dirname(self._path)
        )
        os.close(fd)
        try:
            self._write_empty(temp)
            with self._h5.File(temp, "a", libver="latest") as handle:
                for key, value in contents.items():
                    self._codec.write(handle, key, value)
            os.replace(temp, self._path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    # --- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return os.path.basename(self._path)

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def _options(self) -> dict[str, Any]:
        options = {"safe": self._safe}
        if self._hmac is not None:
            options["key"] = self._hmac  # type: ignore[assignment]
        return options

    def copy(self, name: str | os.PathLike[str] | None = None) -> hdf_archive:
        """A second object on this file, or on a copy of it made at ``name``."""
        if name is None:
            return type(self)(self._path, **self._options())
        with self._file_lock:
            duplicate = type(self)(name, **{**self._options(), **_creation(self._settings)})
            duplicate.update(self._stored_items())
        return duplicate

    def __drop__(self) -> None:
        """Delete the file (and its lock file)."""
        with self._file_lock:
            os.unlink(self._path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path + ".lock")
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (type(self), self._path, self._options()))


def _creation(settings: dict[str, Any]) -> dict[str, Any]:
    options = {k: settings[k] for k in ("serialized", "codec", "meta")}
    if settings["serialized"]:
        options["serializer"] = settings["serializer"]
        if settings["protocol"] is not None:
            options["protocol"] = settings["protocol"]
    return options


def _reopen(cls: type, location: str, options: dict[str, Any]) -> Archive:
    return cls(location, **options)  # type: ignore[no-any-return]


class hdfdir_archive(Archive):
    """A directory of small HDF5 files, one per key (see the module docstring).

    Keywords as for :class:`hdf_archive` (``meta`` stores each entry in its file's root
    attributes), plus ``permissions`` for the directory.
    """

    kind = "hdfdir"

    def __init__(
        self,
        dirname: str | os.PathLike[str] | None = None,
        serialized: bool | None = None,
        *,
        permissions: int | None = None,
        protocol: int | str | None = None,
        meta: bool | None = None,
        serializer: str | None = None,
        codec: str | None = None,
        key: bytes | str | None = None,
        safe: bool = False,
    ) -> None:
        self._h5 = _h5py()
        self._root = os.path.abspath(os.fspath("memo" if dirname is None else dirname))
        super().__init__(id=self._root)
        self._hmac, self._safe = key, safe
        _dirio.make_root(self._root, permissions)
        asked = _asked(serialized, protocol, serializer, codec, meta)
        stored = _dirsettings.read(self._root)
        settings = resolve_settings("hdfdir", stored, asked, key)
        if stored is None:
            settings = resolve_settings(
                "hdfdir", _dirsettings.publish(self._root, settings, None, False), asked, key
            )
        self._settings = settings
        self._codec = HdfCodec(settings, key, safe, self._root)
        self.__state__.update(
            serialized=settings["serialized"],
            protocol=settings["protocol"],
            meta=settings["meta"],
            permissions=permissions,
        )

    def _entry(self, key: Any) -> str:
        return os.path.join(self._root, f"K_{self._codec.digest(key)}.hdf5")

    def _names(self) -> list[str]:
        with os.scandir(self._root) as scan:
            return sorted(
                e.name for e in scan if _ENTRY.match(e.name) and e.is_file(follow_symlinks=False)
            )

    def _read(self, path: str, key: Any = None) -> tuple[Any, Any]:
        digest = os.path.basename(path)[2:34]
        with self._h5.File(path, "r") as handle:
            stored_key = self._codec.read_key(handle, digest)
            if key is None:
                key = stored_key
            return stored_key, self._codec.read_value(handle, digest, key)

    def _get(self, key: Any) -> Any:
        self._check_open()
        try:
            return self._read(self._entry(key), key)[1]
        except FileNotFoundError:
            raise KeyError(key) from None

    def _set(self, key: Any, value: Any) -> None:
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=self._root)
        os.close(fd)
        try:
            with self._h5.File(temp, "w", libver="latest") as handle:
                self._codec.write(handle, key, value)
            os.replace(temp, self._entry(key))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def _delete(self, key: Any) -> None:
        try:
            os.unlink(self._entry(key))
        except FileNotFoundError:
            raise KeyError(key) from None

    def _contains(self, key: Any) -> bool:
        return os.path.isfile(self._entry(key))

    def _keys(self) -> Iterator[Any]:
        return iter([self._read(os.path.join(self._root, n))[0] for n in self._names()])

    def _len(self) -> int:
        return len(self._names())

    def _stored_items(self) -> dict[Any, Any]:
        self._check_open()
        return dict(self._read(os.path.join(self._root, n)) for n in self._names())

    def _clear(self) -> None:
        for name in self._names():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._root, name))

    @property
    def name(self) -> str:
        return os.path.basename(self._root)

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def copy(self, name: str | os.PathLike[str] | None = None) -> hdfdir_archive:
        """A second object on this directory, or on a copy of it made at ``name``."""
        options = {"safe": self._safe, **({"key": self._hmac} if self._hmac is not None else {})}
        if name is None:
            return type(self)(self._root, **options)  # type: ignore[arg-type]
        duplicate = type(self)(name, **options, **_creation(self._settings))  # type: ignore[arg-type]
        duplicate.update(self._stored_items())
        return duplicate

    def __drop__(self) -> None:
        """Delete every entry, the settings and the directory."""
        self._clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._root, _dirsettings.SETTINGS_NAME))
        os.rmdir(self._root)
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        options = {"safe": self._safe, **({"key": self._hmac} if self._hmac is not None else {})}
        return (_reopen, (type(self), self._root, options))
