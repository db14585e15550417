"""The archive policies written once for every backend: expiry, size limit, per-key locks.

:class:`ArchivePolicies` is a base of :class:`~klepto.archives._base.Archive`; it works on the
backend primitives (``_get``, ``_set``, ``_delete``, ``_keys``) and on three optional hooks a
backend implements to support ``size_limit`` (``_entry_sizes``, ``_entry_size``,
``_evict_entry``) and one for cross-process locks (``_lock_path``).

Expiry stores an :class:`~klepto.archives._expiry.Expiring` envelope in place of the value;
reads treat an expired entry as missing; :meth:`ArchivePolicies.expire` deletes them (until
then ``len()`` and iteration count them, as diskcache's do). ``in`` reads the entry, since
its deadline is inside it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, SupportsIndex

from klepto._keylocks import FileKeyLocks, KeyLocks
from klepto.archives._expiry import MISSING, Expiring, live_value
from klepto.archives._sizelimit import SizeLimit

if TYPE_CHECKING:
    from klepto.archives._base import Archive

__all__ = ["ArchivePolicies"]


class ArchivePolicies:
    """Expiry, size limit and per-key locks over the backend primitives (see the module)."""

    # Class defaults: a backend that rebuilds itself without __init__ has no policies.
    _expire: float | None = None
    _timer: Callable[[], float] = staticmethod(time.time)
    _size_limit: SizeLimit | None = None
    _key_locks: KeyLocks | FileKeyLocks | None = None

    # The backend primitives and checks this class builds on (defined by Archive).
    def _get(self, key: Any) -> Any:
        raise NotImplementedError

    def _set(self, key: Any, value: Any) -> None:
        raise NotImplementedError

    def _delete(self, key: Any) -> None:
        raise NotImplementedError

    def _keys(self) -> Iterator[Any]:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> Any:
        raise NotImplementedError

    # --- settings -------------------------------------------------------------------------
    def configure(
        self,
        *,
        expire: float | None = None,
        size_limit: int | None = None,
        timer: Callable[[], float] | None = None,
    ) -> None:
        """Set the default lifetime of new entries (seconds), the size limit (bytes), the clock.

        The factories pass their ``expire=``, ``size_limit=`` and ``timer=`` keywords here.
        These are settings of this archive object (they travel with its pickle), not of the
        storage: every process chooses its own.
        """
        if expire is not None and not expire > 0:
            raise ValueError(f"expire must be a number of seconds > 0, not {expire!r}")
        if size_limit is not None and type(self)._entry_sizes is ArchivePolicies._entry_sizes:
            raise TypeError(f"{type(self).__name__} does not support size_limit")
        self._expire = None if expire is None or math.isinf(expire) else float(expire)
        self._size_limit = None if size_limit is None else SizeLimit(size_limit)
        if timer is not None:
            self._timer = timer

    def policies(self) -> dict[str, Any]:
        """The settings made with :meth:`configure` (the clock only if it was injected)."""
        limit = self._size_limit
        out: dict[str, Any] = {
            "expire": self._expire,
            "size_limit": None if limit is None else limit.limit,
        }
        if self._timer is not ArchivePolicies._timer:
            out["timer"] = self._timer
        return out

    @property
    def timer(self) -> Callable[[], float]:
        """The clock that deadlines are read from (``time.time`` unless injected)."""
        return self._timer

    @property
    def expire_default(self) -> float | None:
        """Seconds a new entry lives when stored without ``expire=`` (None: forever)."""
        return self._expire

    def _deadline(self, expire: float | None) -> float | None:
        """The deadline for a new entry: ``expire`` seconds from now, or the default."""
        seconds = self._expire if expire is None else expire
        if seconds is None or math.isinf(seconds):
            return None
        return self._timer() + seconds

    def _wrap(self, value: Any) -> Any:
        """``value`` as stored by a plain write: in an envelope if entries expire by default."""
        if self._expire is None or type(value) is Expiring:
            return value
        return Expiring(value, self._timer() + self._expire)

    def _wrote(self, key: Any) -> None:
        limit = self._size_limit
        if limit is not None:
            limit.wrote(self, key, str(self))

    # --- backend hooks ----------------------------------------------------------------------
    def _stored_items(self) -> dict[Any, Any]:
        """Every entry as stored (expiring ones in their envelopes); backends read faster."""
        contents = {}
        for key in list(self._keys()):
            try:
                contents[key] = self._get(key)
            except KeyError:
                continue  # deleted since the listing
        return contents

    # Size accounting, for backends that support ``size_limit``.
    def _entry_sizes(self) -> Iterable[tuple[Any, int, Any]]:
        """``(written, size, handle)`` for every entry: when it was written (any orderable;
        None if the backend cannot tell), the bytes it takes, and what :meth:`_evict_entry`
        needs to delete it."""
        raise NotImplementedError

    def _entry_size(self, key: Any) -> int | None:
        """The bytes ``key``'s entry takes, if that is cheap to tell (None: estimate it)."""
        return None

    def _entry_handle(self, key: Any) -> Any:
        """The handle :meth:`_entry_sizes` reports for ``key``'s entry."""
        return key

    def _evict_entry(self, handle: Any) -> None:
        """Delete the entry ``handle`` names (a key, unless the backend says otherwise)."""
        with contextlib.suppress(KeyError):
            self._delete(handle)

    def _lock_path(self) -> str | None:
        """A lock file shared by every process using this storage (None: in-process locks)."""
        return None

    # --- expiry and locks -------------------------------------------------------------------
    def set(self, key: Any, value: Any, expire: float | None = None) -> None:
        """Store ``value`` under ``key``, expiring ``expire`` seconds from now.

        ``expire=None`` uses the archive's default (``expire=`` of the factory; by default
        entries never expire); ``expire=math.inf`` stores an entry that never expires.
        """
        self._check_open()
        deadline = self._deadline(expire)
        self._set(key, value if deadline is None else Expiring(value, deadline))
        self._wrote(key)

    def get(self, key: Any, default: Any = None, *, expire_time: bool = False) -> Any:
        """``self[key]`` or ``default``; ``expire_time=True`` returns ``(value, deadline)``.

        The deadline is a reading of :attr:`timer` (None: the entry never expires).
        """
        if not expire_time:
            try:
                return self[key]
            except KeyError:
                return default
        self._check_open()
        try:
            stored = self._live(key)
        except KeyError:
            return default, None
        if type(stored) is Expiring:
            return stored.value, stored.deadline
        return stored, None

    def _live(self, key: Any) -> Any:
        """``key``'s entry as stored (envelope and all); ``KeyError`` if missing or expired."""
        stored = self._get(key)
        if type(stored) is Expiring and stored.deadline <= self._timer():
            raise KeyError(key)
        return stored

    def expire(self) -> int:
        """Delete the entries that have expired; return how many were deleted.

        Under concurrent writers this is best effort: an entry rewritten while the sweep
        runs may be deleted with its old value (it is recomputed by the next miss).
        """
        self._check_open()
        now = self._timer()
        expired = [
            key
            for key, stored in self._stored_items().items()
            if type(stored) is Expiring and stored.deadline <= now
        ]
        for key in expired:
            with contextlib.suppress(KeyError):
                self._delete(key)
        return len(expired)

    def lock(self, key: Any) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on ``key``: ``with archive.lock(key): ...``.

        Threads of this process always exclude each other. Other processes are excluded too
        when the backend shares a lock file (:attr:`locks_processes`; directory, file and
        SQLite archives): a byte of ``<storage>.klepto-locks`` per key, released by the OS if
        the holder dies. The lock does not stop plain reads and writes; it is for callers
        that agree to take it (the memoizer's stampede protection).
        """
        locks = self._key_locks
        if locks is None:
            path = self._lock_path()
            locks = self._key_locks = KeyLocks() if path is None else FileKeyLocks(path)
        return locks.hold(key)

    @property
    def locks_processes(self) -> bool:
        """Whether :meth:`lock` also excludes other processes."""
        return self._lock_path() is not None

    def _remove_lock_file(self) -> None:
        """Delete the lock file (when the storage itself is dropped)."""
        path = self._lock_path()
        if path is not None:
            FileKeyLocks(path).remove()

    # --- stored form -> value ---------------------------------------------------------------
    @staticmethod
    def _value(stored: Any) -> Any:
        return stored.value if type(stored) is Expiring else stored

    def _popped(self, key: Any, stored: Any, default: tuple[Any, ...]) -> Any:
        """What ``pop`` returns for a removed entry ``stored`` (MISSING: there was none)."""
        value = live_value(stored, self._timer()) if stored is not MISSING else MISSING
        if value is not MISSING:
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def _pop_live(self, pop_once: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
        """``popitem`` over a backend's ``pop_once``: skip (and so remove) expired entries."""
        while True:
            key, stored = pop_once()
            value = live_value(stored, self._timer())
            if value is not MISSING:
                return key, value

    def _live_stored(self) -> dict[Any, Any]:
        """Entries as stored, without the expired ones (the ``cache`` front loads these)."""
        contents = self._stored_items()
        now = self._timer()
        return {
            key: stored
            for key, stored in contents.items()
            if type(stored) is not Expiring or stored.deadline > now
        }

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        # Backends pickle their location and storage settings; the policies of configure()
        # belong to the object, so they are added here, once for every backend.
        reduced = super().__reduce_ex__(protocol)
        if self._expire is None and self._size_limit is None and "timer" not in self.policies():
            return reduced
        return (_configured, (reduced, self.policies()))


def _configured(reduced: Any, policies: dict[str, Any]) -> Archive:
    """Rebuild a pickled archive (as pickle would from ``reduced``), then configure it."""
    rebuild, args, *rest = reduced
    archive: Archive = rebuild(*args)
    state = rest[0] if rest else None
    if state is not None:
        setstate = getattr(archive, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            archive.__dict__.update(state)
    archive.configure(**policies)
    return archive


class _LiveItems(ItemsView[Any, Any]):
    """``items()`` of an archive: only entries still there, and not expired, when reached."""

    def __init__(self, archive: Mapping[Any, Any]) -> None:
        super().__init__(archive)
        self._archive = archive

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        archive = self._archive
        for key in archive:
            try:
                yield key, archive[key]
            except KeyError:
                continue


class _LiveValues(ValuesView[Any]):
    """``values()`` of an archive, as :class:`_LiveItems`."""

    def __init__(self, archive: Mapping[Any, Any]) -> None:
        super().__init__(archive)
        self._archive = archive

    def __iter__(self) -> Iterator[Any]:
        archive = self._archive
        for key in archive:
            try:
                yield archive[key]
            except KeyError:
                continue
