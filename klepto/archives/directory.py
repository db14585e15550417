"""``dir_archive``: a directory with one file per key, safe for many processes at once.

Layout of the root directory::

    .klepto                 settings (JSON with a checksum), published once at creation
    K_<32 hex digits>       one entry per key; the name is stable_hash(key), the file holds
                            the original key and the value (see klepto.archives._direntry)
    .klepto-tmp-*.tmp       a write in flight (or left by a killed writer); never a key
    .klepto-locks           byte-range locks of ``lock(key)`` (created on first use, empty)

A write serializes the entry into a fresh temporary file in the root (``_fs.new_temp_file``: O_EXCL,
mode 0o600, never following a planted symlink) and publishes it with one ``os.replace``:
readers see the old entry or the new one, never a partial one, and the key is never absent
in between. Writes of distinct keys touch distinct files, so writer processes need no lock
and never lose each other's keys; a write costs the same whatever the archive's size.
Listing scans the root once and accepts only regular files named like entries, so temporary
files, foreign files, directories and symlinks are never keys.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from typing import Any

from klepto._canonical import stable_hash
from klepto._fs import fsync_dir
from klepto.archives import _dirio, _dirsettings
from klepto.archives._base import Archive
from klepto.archives._direntry import FIRST_READ, MEMMAP_MODES, EntryFormat
from klepto.archives._expiry import MISSING, live_value
from klepto.archives._literal import LiteralSerializer
from klepto.archives._quickpickle import QuickDillSerializer
from klepto.errors import SignatureError
from klepto.integrity import KEY_ENV, Packer, resolve_key
from klepto.serializers import get_codec

__all__ = ["LOCKS_NAME", "STALE_TEMP_SECONDS", "dir_archive"]

#: Temporary files older than this (seconds since their last change) belong to dead writers.
STALE_TEMP_SECONDS = 3600.0
#: The per-key lock file of ``lock(key)`` in the root (never an entry: no ``K_`` prefix).
LOCKS_NAME = ".klepto-locks"
_ABSENT = object()


class dir_archive(Archive):
    """A directory archive: one file per key under ``dirname`` (default ``'memo'``).

    ``serialized=False`` stores Python literals only (``repr`` + ``ast.literal_eval``);
    ``compression=N`` compresses values with zlib level N; numpy arrays of 1 KiB or more
    (every array with ``fast=True``) are stored as raw blocks, which ``memmode`` ('r', 'c',
    'r+', 'w+') reads memory-mapped; ``protocol`` is a pickle protocol (a str selects json).
    ``serialized``, ``compression`` and ``protocol`` default to what the archive was created
    with. ``key`` signs every entry with HMAC-SHA256 (default ``$KLEPTO_HMAC_KEY``);
    ``safe=True`` refuses to unpickle unsigned data; ``durable=True`` fsyncs every write.
    Files are created 0o600 and directories 0o700, or per ``permissions``.
    """

    kind = "dir"

    def __init__(
        self,
        dirname: str | os.PathLike[str] | None = None,
        serialized: bool | None = None,
        compression: int | None = None,
        permissions: int | None = None,
        *,
        memmode: str | None = None,
        memsize: int = 100,
        protocol: int | str | None = None,
        fast: bool | None = None,
        serializer: str | None = None,
        key: bytes | str | None = None,
        safe: bool = False,
        durable: bool = False,
    ) -> None:
        if memmode is not None and memmode not in MEMMAP_MODES:
            raise ValueError(f"memmode must be one of None, 'r', 'c', 'r+', 'w+'; not {memmode!r}")
        root = os.path.abspath(os.fspath("memo" if dirname is None else dirname))
        super().__init__(id=root)
        self._root = root
        self._prefix = os.path.join(root, _dirio.ENTRY_PREFIX)
        self._file_mode = None if permissions is None else permissions & 0o666
        self._durable = durable
        self._safe = safe
        self._given_key = key  # travels with pickles (as for SQL archives); $KLEPTO_HMAC_KEY not
        _dirio.make_root(root, permissions)
        asked = _dirsettings.requested(serialized, compression, protocol, serializer)
        settings, packer = self._open_settings(asked, bool(fast or memmode), key)
        self._settings = settings
        fast = _effective_fast(settings, fast, memmode)
        memmode = memmode if settings["serialized"] else None
        self._format = EntryFormat(packer, fast=fast, memmode=memmode)
        self.__state__.update(
            serialized=settings["serialized"],
            compression=settings["compression"],
            permissions=permissions,
            memmode=memmode,
            memsize=memsize,
            protocol=_classic_protocol(settings),
            fast=fast,
        )

    def _open_settings(
        self, asked: dict[Any, Any], fast: bool, key: Any
    ) -> tuple[dict[Any, Any], Packer]:
        """The archive's settings (recorded now if it is new) and the packer they call for.

        Everything is validated before anything is recorded, so a failed open never leaves
        settings behind that would bind later opens.
        """
        signing_key = resolve_key(key)
        stored = _dirsettings.read(self._root)
        settings = _dirsettings.resolve(stored, asked, fast, bool(signing_key))
        packer = self._packer_for(settings, key, signing_key)
        if stored is None:  # new archive: record it; a concurrent creator may have won
            if _dirio.holds_classic_entries(self._root):
                _dirio.logger.warning(
                    "%s holds entries of a classic klepto dir_archive; they are not read "
                    "(convert them by loading them with klepto 0.2 and storing them here)",
                    self._root,
                )
            recorded = _dirsettings.publish(self._root, settings, self._file_mode, self._durable)
            if recorded != settings:
                settings = _dirsettings.resolve(recorded, asked, fast, bool(signing_key))
                packer = self._packer_for(settings, key, signing_key)
        return settings, packer

    def _packer_for(self, settings: dict[Any, Any], key: Any, signing_key: bytes | None) -> Packer:
        if settings["signed"] and not signing_key:
            raise SignatureError(f"this archive is signed: pass key=... or set ${KEY_ENV}")
        if signing_key and not settings["signed"]:
            source = "key=..." if key is not None else f"${KEY_ENV}"
            raise ValueError(
                f"this archive was created unsigned; it cannot be opened with {source}"
            )
        return _packer(settings, signing_key, self._safe)

    # --- locating entries -----------------------------------------------------------------
    def _locate(self, key: Any) -> tuple[str, str]:
        digest = stable_hash(key)
        return digest, self._prefix + digest

    # --- backend primitives ---------------------------------------------------------------
    def _get(self, key: Any) -> Any:
        digest = stable_hash(key)  # _locate, inlined: every memoized load comes here
        path = self._prefix + digest
        value = self._read(path, {"path": path, "key": key, "digest": digest}, item=False)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def _read(self, path: str, where: dict[Any, Any], item: bool) -> Any:
        fd = _dirio.open_entry(path)
        if fd is None:
            return _ABSENT
        try:
            data = self._entry_data(fd, path, where)
            if data is None:
                return _ABSENT
            if item:
                return self._format.item_from(data, fd, where)
            return self._format.value_from(data, fd, where)
        finally:
            os.close(fd)

    def _entry_data(
        self, fd: int, path: str, where: dict[Any, Any], value: bool = True
    ) -> bytes | None:
        """The entry's header and envelopes (the key's only, without ``value``); None if
        ``path`` is no regular file (a planted directory or FIFO is not an entry).

        A small entry costs one read and no ``fstat``: whatever a file holds, a value is
        used only once its envelope passes its checks, and anything short of a whole entry
        (a larger one, a damaged one, a directory, a FIFO) takes the careful way.
        """
        try:
            head = os.read(fd, FIRST_READ)
        except OSError:  # a directory (EISDIR), a device...; a regular file's error stands
            if _dirio.regular_size(fd, path) is None:
                return None
            raise
        if self._format.holds(head):
            return head
        size = _dirio.regular_size(fd, path)
        if size is None:
            return None
        return self._format.complete(fd, head, size, where, value)

    def _set(self, key: Any, value: Any) -> None:
        digest, path = self._locate(key)
        self._publish(path, self._format.encode(digest, key, value))

    def _delete(self, key: Any) -> None:
        _, path = self._locate(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise KeyError(key) from None
        if self._durable:
            fsync_dir(self._root)

    def _contains(self, key: Any) -> bool:
        _, path = self._locate(key)
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def _keys(self) -> Iterator[Any]:
        for name in _dirio.entry_names(self._root):
            path = os.path.join(self._root, name)
            fd = _dirio.open_entry(path)
            if fd is None:
                continue  # deleted since the scan
            where = {"path": path, "digest": name[2:]}
            try:
                data = self._entry_data(fd, path, where, value=False)
                key = _ABSENT if data is None else self._format.key_from(data, where)
            finally:
                os.close(fd)
            if key is not _ABSENT:
                yield key

    def _len(self) -> int:
        return len(_dirio.entry_names(self._root))

    def _clear(self) -> None:
        for name in _dirio.entry_names(self._root):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._root, name))
        self.remove_stale_temps()
        if self._durable:
            fsync_dir(self._root)

    # --- writing --------------------------------------------------------------------------
    def _publish(self, path: str, chunks: list[Any], exclusive: bool = False) -> bool:
        return _dirio.publish(
            self._root,
            path,
            chunks,
            exclusive=exclusive,
            mode=self._file_mode,
            durable=self._durable,
        )

    # --- atomic mapping operations (one winner across processes) ---------------------------
    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value (or ``default``); atomic across processes."""
        self._check_open()
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        digest, path = self._locate(key)
        claim = _dirio.claim(self._root, path)
        value = _ABSENT
        if claim is not None:
            value = self._read_claim(claim, path, {"path": path, "key": key, "digest": digest})
        return self._popped(key, MISSING if value is _ABSENT else value, default)

    def _read_claim(self, claim: str, path: str, where: dict[Any, Any], item: bool = False) -> Any:
        try:
            value = self._read(claim, where, item)
        except BaseException:
            _dirio.move_if_absent(claim, path)
            raise
        if value is _ABSENT:  # not a regular file: put back whatever was planted there
            _dirio.move_if_absent(claim, path)
        else:
            os.unlink(claim)
        return value

    def _popitem_once(self) -> tuple[Any, Any]:
        """Remove and return some ``(key, stored entry)``; atomic across processes."""
        for name in _dirio.entry_names(self._root):
            path = os.path.join(self._root, name)
            claim = _dirio.claim(self._root, path)
            if claim is None:
                continue
            item = self._read_claim(claim, path, {"path": path, "digest": name[2:]}, item=True)
            if item is not _ABSENT:
                return item  # type: ignore[no-any-return]
        raise KeyError("popitem(): archive is empty")

    def _add(self, key: Any, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; atomic across processes (a hard link
        that fails if the entry exists)."""
        digest, path = self._locate(key)
        if self._contains(key):
            return False
        return self._publish(path, self._format.encode(digest, key, value), exclusive=True)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``self[key]``, storing ``default`` first if absent; one winner across processes."""
        self._check_open()
        digest, path = self._locate(key)
        chunks = None
        while True:
            value = self._read(path, {"path": path, "key": key, "digest": digest}, item=False)
            if value is not _ABSENT:
                live = live_value(value, self._timer())
                if live is not MISSING:
                    return live
                self.pop(key, None)  # expired: make way for the default
                continue
            chunks = chunks or self._format.encode(digest, key, self._wrap(default))
            if self._publish(path, chunks, exclusive=True):
                return default

    def _stored_items(self) -> dict[Any, Any]:
        """Every entry as stored (each entry read once)."""
        self._check_open()
        contents = {}
        for name in _dirio.entry_names(self._root):
            path = os.path.join(self._root, name)
            item = self._read(path, {"path": path, "digest": name[2:]}, item=True)
            if item is not _ABSENT:
                contents[item[0]] = item[1]
        return contents

    # --- size accounting and locks (see klepto.archives._policy) ----------------------------
    def _entry_sizes(self) -> list[tuple[int, int, str]]:
        """``(mtime_ns, bytes, path)`` of every entry file: oldest writes are evicted first."""
        sizes = []
        for name in _dirio.entry_names(self._root):
            path = os.path.join(self._root, name)
            with contextlib.suppress(FileNotFoundError):
                info = os.lstat(path)
                sizes.append((info.st_mtime_ns, info.st_size, path))
        return sizes

    def _entry_size(self, key: Any) -> int | None:
        try:
            return os.lstat(self._locate(key)[1]).st_size
        except FileNotFoundError:
            return None

    def _entry_handle(self, key: Any) -> str:
        return self._locate(key)[1]

    def _evict_entry(self, handle: Any) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle)

    def _lock_path(self) -> str:
        return os.path.join(self._root, LOCKS_NAME)

    # --- maintenance ----------------------------------------------------------------------
    def remove_stale_temps(self, max_age: float = STALE_TEMP_SECONDS) -> int:
        """Delete temporary files of writers dead for ``max_age`` seconds; return the count.

        A live writer's temporary file changes within milliseconds, so an old one was left
        by a killed process. ``clear()`` calls this; call it after crashes to reclaim space.
        """
        return _dirio.remove_stale_temps(self._root, max_age)

    def __drop__(self) -> None:
        """Delete every entry, the settings and the root directory itself.

        Files klepto did not write are left alone: then the root stays and ``OSError``
        says what is in the way.
        """
        self._check_open()
        self._clear()
        self.remove_stale_temps(max_age=0)
        self._remove_lock_file()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._root, _dirsettings.SETTINGS_NAME))
        try:
            os.rmdir(self._root)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            foreign = sorted(os.listdir(self._root))[:5]
            raise OSError(
                exc.errno, f"dropped the archive's files but not foreign ones: {foreign}"
            ) from exc

    # --- identity, copies, pickling -------------------------------------------------------
    @property
    def name(self) -> str:
        """The root directory's base name (``__state__['id']`` is its absolute path)."""
        return os.path.basename(self._root)

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def settings(self) -> dict[str, Any]:
        """The settings recorded in the archive (kind, format, serializer, codec, ...)."""
        return dict(self._settings)

    def _options(self) -> dict[str, Any]:
        state = self.__state__
        options = {k: state[k] for k in ("serialized", "compression", "permissions", "memmode")}
        options.update(memsize=state["memsize"], fast=state["fast"], safe=self._safe)
        options.update(serializer=self._settings["serializer"], durable=self._durable)
        if self._settings["serializer"] in ("dill", "pickle"):
            options["protocol"] = self._settings["protocol"]
        if self._given_key is not None:
            options["key"] = self._given_key
        return options

    def copy(self, name: str | os.PathLike[str] | None = None) -> dir_archive:
        """A second archive object: on the same root, or on a copy of it made at ``name``."""
        self._check_open()
        if name is None:
            return _reopen(type(self), self._root, self._options())
        target = os.path.abspath(os.fspath(name))
        shutil.copytree(self._root, target, symlinks=True, ignore=_dirio.ignore_temps)
        return _reopen(type(self), target, self._options())

    def __reduce__(self) -> tuple[Any, ...]:
        # Location and settings only, never contents. A key passed as key=... travels along
        # (so workers can read a signed archive); one from $KLEPTO_HMAC_KEY does not.
        return (_reopen, (type(self), self._root, self._options()))

    # --- classic helpers ------------------------------------------------------------------
    def _fname(self, key: Any) -> str:
        """The entry's file name for ``key`` (``K_`` + its stable hash)."""
        return _dirio.ENTRY_PREFIX + stable_hash(key)

    def _getdir(self, key: Any) -> str:
        """The path of ``key``'s entry (a file here; a directory in classic klepto)."""
        return self._locate(key)[1]

    def _mkdir(self, key: Any) -> str:
        """Make sure ``key``'s entry can be written (its directory exists); its path."""
        _dirio.make_root(self._root, self.__state__["permissions"])
        return self._getdir(key)

    def _rmdir(self, key: Any) -> None:
        """Remove ``key``'s entry if there is one."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._getdir(key))

    def _lsdir(self) -> list[str]:
        """The entry file names in the root."""
        return _dirio.entry_names(self._root)

    def _lookup(self, key: Any) -> Any:
        return self[key]

    def _store(self, key: Any, value: Any) -> None:
        self[key] = value


def _reopen(cls: type, root: str, options: dict[str, Any]) -> dir_archive:
    return cls(root, **options)  # type: ignore[no-any-return]


def _packer(settings: dict[str, Any], key: bytes | None, safe: bool) -> Packer:
    serializer: Any = settings["serializer"]
    if serializer == "literal":
        serializer = LiteralSerializer()
    elif serializer == "dill":
        serializer = QuickDillSerializer(settings["protocol"])
    level = settings["compression"]
    codec = get_codec("zlib", level=level) if level else None
    return Packer(serializer, codec, key=key, safe=safe, protocol=settings["protocol"])


def _effective_fast(settings: dict[str, Any], fast: bool | None, memmode: str | None) -> bool:
    """Classic normalisation: literals are never fast; compression or a memmode force it."""
    if not settings["serialized"]:
        return False
    chosen = settings["fast"] if fast is None else bool(fast)
    return chosen or bool(settings["compression"]) or memmode is not None


def _classic_protocol(settings: dict[str, Any]) -> int | str | None:
    if settings["serializer"] in ("json", "safe"):
        return settings["serializer"]  # type: ignore[no-any-return]
    return settings["protocol"]  # type: ignore[no-any-return]
