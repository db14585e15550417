"""``file_archive``: a whole archive in one file, safe for many processes at once.

The file (default ``memo.pkl``) is a record file (docs/formats.rst): every write appends one
record and commits it, so a write costs the same whatever the archive's size, a crash
never leaves a partial archive, and writers in many processes never lose each other's
keys (each write takes the file's lock for a moment and first catches up with the others).
Entries are found through an index by ``stable_hash(key)``; the original key is stored in
the record. ``<file>.idx`` saves the index so that opening a large archive reads a few
tables instead of the whole file; ``<file>.lock`` is the writer lock. Overwritten and
deleted entries are reclaimed by compaction, automatic or on demand (``compact()``).

>>> from klepto.archives import file_archive
>>> d = file_archive('numbers.pkl', cached=False)
>>> d.update({1: 'one', (2, 3): [4, 5]})
>>> d[(2, 3)], sorted(d, key=str)
([4, 5], [(2, 3), 1])
>>> file_archive('numbers.pkl', cached=False)[1]
'one'
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from klepto.archives import _filesettings
from klepto.archives._base import Archive
from klepto.archives._expiry import MISSING, Expiring, live_value
from klepto.archives._fileformat import CLEAR_RECORD, EntryCodec, delete_record, digest_of
from klepto.archives._filestore import FileStore
from klepto.archives._literal import LiteralSerializer
from klepto.archives._quickpickle import QuickDillSerializer
from klepto.errors import SignatureError
from klepto.integrity import KEY_ENV, Packer, resolve_key
from klepto.serializers import get_codec

__all__ = ["file_archive"]

logger = logging.getLogger("klepto.archives.file")

_SOURCE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd")
_NO_DEFAULT = object()


class file_archive(Archive):
    """An archive in one file ``filename`` (default ``memo.pkl``; see the module docstring).

    ``serialized=False`` stores Python literals only (``repr`` + ``ast.literal_eval``,
    never executed; default name ``memo.py``). ``protocol`` is a pickle protocol, or a str
    selecting json (default name ``memo.json``); ``serializer`` names one directly;
    ``compression=N`` compresses values with zlib level N. These default to what the file
    was created with. ``key`` signs every entry with HMAC-SHA256 (default
    ``$KLEPTO_HMAC_KEY``); ``safe=True`` refuses to unpickle unsigned data.
    ``durable=True`` (or ``durability='durable'``) fsyncs every commit. A file whose last
    commit is damaged raises ``CorruptArchiveError``; ``repair=True`` opens it as of the
    last intact commit instead (the next write truncates the damage). ``compact_ratio``:
    compact automatically once superseded records outnumber live entries this many times
    (``None``: only on ``compact()``).
    """

    kind = "file"

    def __init__(
        self,
        filename: str | os.PathLike[str] | None = None,
        serialized: bool | None = None,
        *,
        protocol: int | str | None = None,
        serializer: str | None = None,
        compression: int | None = None,
        key: bytes | str | None = None,
        safe: bool = False,
        durable: bool = False,
        durability: str | None = None,
        repair: bool = False,
        compact_ratio: float | None = 1.0,
    ) -> None:
        name = _classic_name(filename, serialized, protocol)
        self._path = os.path.abspath(name)
        super().__init__(id=name)
        self._safe = safe
        self._given_key = key  # travels with pickles, as for the other archives
        self._durability = _durability(durable, durability)
        self._repair = repair
        asked = _filesettings.requested(serialized, protocol, serializer, compression)
        self._store = self._open_store(asked, key, compact_ratio)
        self._compact_ratio = compact_ratio
        self.__state__.update(
            serialized=self._settings["serialized"], protocol=_classic_protocol(self._settings)
        )

    def _open_store(
        self, asked: dict[Any, Any], key: Any, compact_ratio: float | None
    ) -> FileStore:
        """Open (or create) the file, then check its settings against ``asked``."""
        signing_key = resolve_key(key)
        source = "key=..." if key is not None else f"${KEY_ENV}"
        fresh = _filesettings.resolve(None, asked, bool(signing_key))
        if not os.path.lexists(self._path):
            _packers(fresh, signing_key, self._safe, source)  # refuse before creating
        store = FileStore(
            self._path,
            _filesettings.encode(fresh),
            durability=self._durability,
            strict=not self._repair,
            compact_ratio=compact_ratio,
        )
        try:
            stored = _filesettings.decode(store.metadata(), self._path)
            self._settings = _filesettings.resolve(stored, asked, bool(signing_key))
            store.codec = EntryCodec(*_packers(self._settings, signing_key, self._safe, source))
        except BaseException:
            store.close()
            raise
        store.settings_blob = _filesettings.encode(self._settings)
        return store

    # --- backend primitives ---------------------------------------------------------------
    def _get(self, key: Any) -> Any:
        with self._lock:
            return self._store.get(key)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # __getitem__/__setitem__ below inline _get/_set: a subclass overriding those gets
        # the base class's versions back, which call them.
        super().__init_subclass__(**kwargs)
        if "_get" in cls.__dict__ and "__getitem__" not in cls.__dict__:
            cls.__getitem__ = Archive.__getitem__  # type: ignore[method-assign]
        if "_set" in cls.__dict__ and "__setitem__" not in cls.__dict__:
            cls.__setitem__ = Archive.__setitem__  # type: ignore[method-assign]

    def __getitem__(self, key: Any) -> Any:
        # The base class's __getitem__, with the read path inlined (it is the hot path).
        if self._closed:
            self._check_open()
        with self._lock:
            value = self._store.get(key)
        if type(value) is Expiring:
            value = live_value(value, self._timer())
            if value is MISSING:
                raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        # The base class's __setitem__, with _set inlined (it is the hot path).
        if self._closed:
            self._check_open()
        if self._expire is not None:
            value = self._wrap(value)
        digest = digest_of(key)
        record = self._store.codec.set_record(digest, key, value)
        with self._lock:
            self._store.put(record, digest)
        if self._size_limit is not None:
            self._wrote(key)

    def _set(self, key: Any, value: Any) -> None:
        digest = digest_of(key)
        record = self._store.codec.set_record(digest, key, value)
        with self._lock:
            self._store.put(record, digest)

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        codec = self._store.codec
        records = []
        for key, value in items:
            digest = digest_of(key)
            records.append((codec.set_record(digest, key, value), digest))
        with self._lock, self._store.writing():
            for record, digest in records:
                self._store.append(record, digest)

    def _delete(self, key: Any) -> None:
        with self._lock, self._store.writing():
            digest, found = self._store.locate(key)
            if found is None:
                raise KeyError(key)
            self._store.append(delete_record(digest), digest)

    def _contains(self, key: Any) -> bool:
        with self._lock:
            self._store.sync()
            return self._store.locate(key)[1] is not None

    def _keys(self) -> Iterator[Any]:
        with self._lock:
            store = self._store
            store.sync()
            return iter([store.key_of(found) for found in store.entries()])

    def _len(self) -> int:
        with self._lock:
            self._store.sync()
            return self._store.index.live

    def _add(self, key: Any, value: Any) -> bool:
        digest = digest_of(key)
        record = self._store.codec.set_record(digest, key, value)
        with self._lock, self._store.writing():
            if self._store.index.locate(digest) is not None:
                return False
            self._store.append(record, digest)
            return True

    def _clear(self) -> None:
        with self._lock, self._store.writing():
            if self._store.main.committed_count or len(self._store.main):
                self._store.append(CLEAR_RECORD, None)

    # --- atomic read-modify-write operations (one winner across processes) ----------------
    def pop(self, key: Any, default: Any = _NO_DEFAULT) -> Any:
        """Remove ``key`` and return its value (or ``default``); atomic across processes."""
        self._check_open()
        with self._lock, self._store.writing():
            store = self._store
            digest, found = store.locate(key)
            if found is None:
                if default is _NO_DEFAULT:
                    raise KeyError(key)
                return default
            value = store.value(digest, found, key)
            store.append(delete_record(digest), digest)
        return self._popped(key, value, () if default is _NO_DEFAULT else (default,))

    def _popitem_once(self) -> tuple[Any, Any]:
        """Remove and return the most recently written ``(key, stored entry)``."""
        with self._lock, self._store.writing():
            store = self._store
            entries = store.entries()
            if not entries:
                raise KeyError("popitem(): archive is empty")
            key, value = store.item_of(entries[-1])
            store.append(delete_record(digest_of(key)), digest_of(key))
            return key, value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``self[key]``, storing ``default`` first if absent; atomic across processes."""
        self._check_open()
        digest = digest_of(key)
        with self._lock, self._store.writing():
            store = self._store
            found = store.index.locate(digest)
            if found is not None:
                value = live_value(store.value(digest, found, key), self._timer())
                if value is not MISSING:
                    return value
            store.append(store.codec.set_record(digest, key, self._wrap(default)), digest)
            return default

    def _stored_items(self) -> dict[Any, Any]:
        """Every entry as stored (each record read once)."""
        self._check_open()
        with self._lock:
            store = self._store
            store.sync()
            return dict(store.item_of(found) for found in store.entries())

    # --- size accounting and locks (see klepto.archives._policy) ----------------------------
    def _entry_sizes(self) -> list[tuple[int, int, Any]]:
        """``(write order, record bytes, key)`` of every live entry."""
        with self._lock:
            store = self._store
            store.sync()
            sizes = []
            for order, found in enumerate(store.entries()):
                record = store.record(found)
                where = {"path": self._path, "offset": found[1] or None}
                sizes.append((order, len(record), store.codec.key(record, where)))
            return sizes

    def _entry_size(self, key: Any) -> int | None:
        with self._lock:
            found = self._store.locate(key)[1]
            return None if found is None else len(self._store.record(found, key))

    def _lock_path(self) -> str:
        return self._path + ".klepto-locks"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[file_archive]:
        """Group writes into one atomic commit (others wait for the lock meanwhile)."""
        self._check_open()
        with self._lock, self._store.writing():
            yield self

    def compact(self) -> None:
        """Rewrite the file with only the live entries (reclaims overwritten and deleted)."""
        self._check_open()
        with self._lock, self._store.writing():
            self._store.compact()

    # --- identity, copies, pickling -------------------------------------------------------
    @property
    def name(self) -> str:
        """The file's base name (``__state__['id']`` is the name as given)."""
        return os.path.basename(self._path)

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def settings(self) -> dict[str, Any]:
        """The settings recorded in the file (kind, format, serializer, codec, ...)."""
        return dict(self._settings)

    def _options(self) -> dict[str, Any]:
        settings = self._settings
        options = {
            "serialized": settings["serialized"],
            "serializer": None if settings["serializer"] == "literal" else settings["serializer"],
            "compression": settings["compression"],
            "safe": self._safe,
            "durability": self._durability,
            "repair": self._repair,
            "compact_ratio": self._compact_ratio,
        }
        if settings["serializer"] in ("dill", "pickle"):
            options["protocol"] = settings["protocol"]
        if self._given_key is not None:
            options["key"] = self._given_key
        return options

    def copy(self, name: str | os.PathLike[str] | None = None) -> file_archive:
        """A second archive object: on the same file, or on a copy of it made at ``name``."""
        self._check_open()
        if name is None:
            return _reopen(type(self), self._path, self._options())
        target = os.path.abspath(os.fspath(name))
        with self._lock:
            self._store.copy_to(target)
        return _reopen(type(self), target, self._options())

    def __drop__(self) -> None:
        """Delete the archive's file (and its index and lock files); the object is closed."""
        self._check_open()
        with self._lock:
            self._store.drop()
            self._closed = True
        self._remove_lock_file()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._store.close()
            self._closed = True

    def __reduce__(self) -> tuple[Any, ...]:
        # Location and settings only, never contents. A key passed as key=... travels along
        # (so workers can read a signed archive); one from $KLEPTO_HMAC_KEY does not.
        return (_reopen, (type(self), self._path, self._options()))


def _reopen(cls: type, path: str, options: dict[str, Any]) -> file_archive:
    return cls(path, **options)  # type: ignore[no-any-return]


def _classic_name(filename: Any, serialized: bool | None, protocol: Any) -> str:
    """Classic default names: ``memo.pkl``, ``memo.json`` (str protocol), ``memo.py``."""
    if serialized is False:
        if filename is None:
            return "memo.py"
        name = os.fspath(filename)
        return name if name.endswith(_SOURCE_SUFFIXES) else name + ".py"  # type: ignore[no-any-return]
    if filename is None:
        return "memo.json" if isinstance(protocol, str) else "memo.pkl"
    return os.fspath(filename)  # type: ignore[no-any-return]


def _durability(durable: bool, durability: str | None) -> str:
    if durability is None:
        return "durable" if durable else "flush"
    if durable and durability != "durable":
        raise ValueError(f"durable=True contradicts durability={durability!r}")
    return durability


def _classic_protocol(settings: dict[str, Any]) -> int | str | None:
    if settings["serializer"] in ("json", "safe"):
        return settings["serializer"]  # type: ignore[no-any-return]
    return settings["protocol"]  # type: ignore[no-any-return]


def _packers(
    settings: dict[str, Any], key: bytes | None, safe: bool, source: str
) -> tuple[Packer, Packer]:
    """The value packer and the key packer (no codec: keys are small) for ``settings``."""
    if settings["signed"] and not key:
        raise SignatureError(f"this archive is signed: pass key=... or set ${KEY_ENV}")
    if key and not settings["signed"]:
        raise ValueError(f"this archive was created unsigned; it cannot be opened with {source}")
    name = settings["serializer"]
    protocol = settings["protocol"]
    serializer: Any = name
    if name == "literal":
        serializer = LiteralSerializer()
    elif name == "dill":
        # Protocol 5 unless asked otherwise: a large array or byte string then loads
        # straight into its final buffer (one allocation instead of two); any Python klepto
        # supports reads it.
        serializer = QuickDillSerializer(5 if protocol is None else protocol)
    level = settings["compression"]
    codec = get_codec("zlib", level=level) if level else None
    packer = Packer(serializer, codec, key=key, safe=safe, protocol=protocol)
    return packer, Packer(packer.serializer, None, key=key, safe=safe)
