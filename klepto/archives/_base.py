"""The archive base class: a ``MutableMapping`` over some storage, plus klepto's classic API.

A backend ("raw") archive implements a handful of primitives (``_get``, ``_set``,
``_delete``, ``_keys``, ``_len`` and, when it can do better than one key at a time,
``_get_many``, ``_set_many``, ``_contains``, ``_clear``, ``_add``, ``_stored_items``);
everything else -- the mapping API, the classic ``load/dump/sync/archived/drop/open``
no-ops that let a raw archive stand where a cache is expected, ``popkeys``, ``copy``,
``__asdict__``, context management and closing -- is here, written once, and so are the
policies of :mod:`klepto.archives._policy` (expiry, size limit, per-key locks).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from typing import Any, ClassVar

from klepto.archives._expiry import MISSING, Expiring, live_value
from klepto.archives._policy import ArchivePolicies, _LiveItems, _LiveValues
from klepto.errors import ArchiveClosedError

__all__ = ["Archive", "archive_name"]

_NO_DEFAULT = object()


class Archive(ArchivePolicies, MutableMapping):  # type: ignore[type-arg]
    """Base class of every backend archive (never instantiated itself).

    ``__state__`` always holds ``'id'``, the archive's identity or location; ``name``,
    ``state`` and ``archive`` are read-only views of it (setting them raises ``ValueError``,
    as in classic klepto).
    """

    #: The registry name of the backend kind (``'dict'``, ``'file'``, ``'dir'``, ``'sql'``...).
    kind: ClassVar[str] = ""

    def __init__(self, **state: Any) -> None:
        if type(self) is Archive:
            raise NotImplementedError("cannot instantiate archive base class")
        self.__state__: dict[str, Any] = {"id": None, **state}
        self._closed = False
        self._lock = threading.RLock()

    # --- backend primitives ---------------------------------------------------------------
    def _get(self, key: Any) -> Any:
        raise KeyError(key)

    def _set(self, key: Any, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is read-only")

    def _delete(self, key: Any) -> None:
        raise KeyError(key)

    def _keys(self) -> Iterator[Any]:
        return iter(())

    def _len(self) -> int:
        return sum(1 for _ in self._keys())

    def _contains(self, key: Any) -> bool:
        try:
            self._get(key)
        except KeyError:
            return False
        return True

    def _get_many(self, keys: list[Any]) -> dict[Any, Any]:
        """The entries of ``keys`` as stored (missing ones left out); backends read in bulk."""
        found = {}
        for key in keys:
            try:
                found[key] = self._get(key)
            except KeyError:
                continue
        return found

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        with self.transaction():
            for key, value in items:
                self._set(key, value)

    def _add(self, key: Any, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; True if stored.

        This default is atomic among the threads of one process. Persistent backends override
        it with an operation that is atomic across processes (``O_EXCL``/``link``, an INSERT
        that fails on the primary key, a write under the file's lock).
        """
        with self._lock:
            if self._contains(key):
                return False
            self._set(key, value)
            return True

    def _clear(self) -> None:
        for key in list(self._keys()):
            with contextlib.suppress(KeyError):
                self._delete(key)

    # --- mapping API ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ArchiveClosedError(f"{self!s} is closed")

    def __getitem__(self, key: Any) -> Any:
        self._check_open()
        value = self._get(key)
        if type(value) is Expiring:
            value = live_value(value, self._timer())
            if value is MISSING:
                raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check_open()
        self._set(key, self._wrap(value))
        if self._size_limit is not None:
            self._wrote(key)

    def __delitem__(self, key: Any) -> None:
        self._check_open()
        self._delete(key)

    def __iter__(self) -> Iterator[Any]:
        self._check_open()
        return iter(self._keys())

    def __len__(self) -> int:
        self._check_open()
        return self._len()

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` holds an entry that has not expired (its deadline is inside it)."""
        self._check_open()
        try:
            self._live(key)
        except KeyError:
            return False
        return True

    def items(self) -> ItemsView[Any, Any]:
        """The items, leaving out expired entries and entries deleted during the walk."""
        return _LiveItems(self)

    def values(self) -> ValuesView[Any]:
        """The values, leaving out expired entries and entries deleted during the walk."""
        return _LiveValues(self)

    def update(self, other: Any = (), /, **kwds: Any) -> None:
        """Store many items at once (in one transaction where the backend has them)."""
        self._check_open()
        if hasattr(other, "__asdict__") and not isinstance(other, Mapping):
            other = other.__asdict__()
        items = list(other.items() if hasattr(other, "items") else other)
        items.extend(kwds.items())
        if not items:
            return
        if self._expire is not None:
            items = [(key, self._wrap(value)) for key, value in items]
        self._set_many(items)
        if self._size_limit is not None:
            for key, _ in items:
                self._wrote(key)

    def clear(self) -> None:
        self._check_open()
        self._clear()
        if self._size_limit is not None:
            self._size_limit.forget()

    def add(self, key: Any, value: Any) -> bool:
        """Store ``value`` under ``key`` only if the key is absent (atomically); True if stored.

        Concurrent writers racing on one key: exactly one ``add`` returns True, and no
        stored value is ever replaced by it. An expired entry not yet deleted by
        :meth:`expire` counts as present here.
        """
        self._check_open()
        added = self._add(key, self._wrap(value))
        if added and self._size_limit is not None:
            self._wrote(key)
        return added

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._check_open()
        with self._lock:
            try:
                return self._value(self._live(key))
            except KeyError:
                self[key] = default
                return default

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value (an expired entry is removed as missing)."""
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        self._check_open()
        try:
            stored = self._get(key)
            self._delete(key)
        except KeyError:
            stored = MISSING
        return self._popped(key, stored, default)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return some ``(key, value)``; expired entries met on the way are removed."""
        self._check_open()
        return self._pop_live(self._popitem_once)

    def _popitem_once(self) -> tuple[Any, Any]:
        for key in self._keys():
            try:
                stored = self._get(key)
                self._delete(key)
            except KeyError:
                continue  # taken by another writer since the listing
            return key, stored
        raise KeyError("popitem(): archive is empty")

    def popkeys(self, keys: Any, *default: Any) -> Any:
        """Pop several keys; without a default, raise ``KeyError`` before popping any."""
        return popkeys(self, keys, *default)

    def fromkeys(self, iterable: Iterable[Any], value: Any = None) -> dict[Any, Any]:
        """A plain dict with keys from ``iterable`` (classic klepto API)."""
        return dict.fromkeys(iterable, value)

    def __asdict__(self) -> dict[Any, Any]:
        """A plain dict of the contents (expired entries left out)."""
        self._check_open()
        return {key: self._value(stored) for key, stored in self._live_stored().items()}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.__asdict__() == dict(other.items())
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]

    # --- identity -------------------------------------------------------------------------
    @property
    def name(self) -> Any:
        return self.__state__["id"]

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.__state__)

    @state.setter
    def state(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    @property
    def archive(self) -> Archive:
        return self

    @archive.setter
    def archive(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def settings(self) -> dict[str, Any]:
        """How this archive stores data (recorded inside persistent archives)."""
        return {"kind": self.kind}

    def __repr__(self) -> str:
        name = archive_name(self)
        contents = self.__asdict__() if not self._closed else "<closed>"
        label = f"'{name}', " if name else ""
        return f"{type(self).__name__}({label}{contents}, cached=False)"

    def __str__(self) -> str:
        name = archive_name(self)
        return f"{type(self).__name__}({name!r})" if name else f"{type(self).__name__}()"

    # --- the cache interface, as no-ops (a raw archive can stand in for a cache) ----------
    def load(self, *keys: Any) -> None:
        """No-op: a raw archive has no memory to load into."""

    def dump(self, *keys: Any) -> None:
        """No-op: every write of a raw archive already reaches its storage."""

    def sync(self, clear: bool = False) -> None:
        """No-op for a raw archive."""

    def archived(self, *on: Any) -> bool:
        """False: a raw archive has no archive behind it; it cannot be toggled."""
        if len(on) > 1:
            raise TypeError(f"archived expected at most 1 argument, got {len(on)}")
        if on:
            raise ValueError("cannot toggle archive")
        return False

    def drop(self) -> None:
        raise ValueError("cannot set new archive")

    def open(self, archive: Any) -> None:
        raise ValueError("cannot set new archive")

    # --- lifecycle ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Archive]:
        """Group writes: other threads of this process wait; backends make it atomic."""
        self._check_open()
        with self._lock:
            yield self

    def __drop__(self) -> None:
        """Delete the contents and the storage itself (file, directory, table)."""
        self.clear()

    def close(self) -> None:
        """Release files and connections; later use raises :class:`ArchiveClosedError`."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def popkeys(mapping: MutableMapping[Any, Any], keys: Any, *default: Any) -> Any:
    """Pop each key of ``keys`` (a non-iterable key is popped alone).

    Without a default, a missing key raises ``KeyError`` before anything is popped.
    """
    if len(default) > 1:
        raise TypeError(f"popkeys expected at most 2 arguments, got {1 + len(default)}")
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        return mapping.pop(keys, *default)
    keys = list(keys)
    if not default:
        missing = [k for k in keys if k not in mapping]
        if missing:
            raise KeyError(missing[0])
    return [mapping.pop(k, *default) for k in keys]


def archive_name(archive: Any) -> Any:
    """The short name an archive reports (``name`` property), or None."""
    try:
        return archive.name
    except (AttributeError, KeyError):
        return None
