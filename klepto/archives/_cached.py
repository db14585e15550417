"""The in-memory ``cache`` front: a real ``dict`` with a backend archive behind it.

Plain dict operations touch memory only (reads at C speed: the memoizer's hit path is a dict
lookup); ``load``, ``dump`` and ``sync`` move data between memory and the backend. A
``null_archive`` backend means "no archive": ``archived()`` is then False.

Writes to memory are remembered as *unsaved* until they are dumped. ``close()`` writes them,
and so does a normal interpreter exit (unless ``autodump`` is False), so a program that
forgets ``dump()`` does not lose its results. Nothing is written earlier than classic klepto
would write it, so memory and archive sizes during a run are as before.

Expiring entries (``set(key, value, expire=...)``, a backend with an ``expire`` default, or a
memoizer's ``ttl``) keep their deadlines beside the values, in ``_deadlines``: memory values
stay plain, ``dump`` writes them to the backend in their envelopes and ``load`` reads the
deadlines back. While any entry has a deadline the front is an ``_expiring_cache``, whose
reads treat expired entries as missing; ``expire()`` removes them (``len()`` and iteration
count them until then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from klepto.archives import _autodump
from klepto.archives._base import Archive, archive_name, popkeys
from klepto.archives._expiry import Expiring
from klepto.archives.memory import null_archive

_NO_DEFAULT = object()

__all__ = ["cache"]


class cache(dict[Any, Any]):
    """``cache(*args, archive=null_archive(), **kwds)``: a dict in front of an archive.

    ``autodump`` (class default True; set it on an instance, or pass ``autodump=False`` to a
    factory) makes ``close()`` and interpreter exit write unsaved entries to the backend.
    """

    autodump = True
    #: The clock of memory deadlines (None: the backend's ``timer``); a memoizer with
    #: ``ttl`` and an injected ``timer`` sets it.
    timer: Callable[[], float] | None = None
    _tracking = False  # whether unsaved keys are tracked (there is a backend to save to)

    def __init__(self, *args: Any, archive: Any = None, **kwds: Any) -> None:
        self._unsaved: set[Any] = set()
        self._deadlines: dict[Any, float] = {}
        super().__init__(*args, **kwds)
        self.__swap__: Any = null_archive()
        self._set_backend(null_archive() if archive is None else archive)
        for key in self:
            self._touched(key)

    def _set_backend(self, backend: Any) -> None:
        self.__archive__ = backend
        self._reclass()

    def _reclass(self) -> None:
        """Track unsaved keys only while there is somewhere to save them.

        Without a backend the front is a ``_plain_cache``, whose writes are the C-level dict
        methods: the memoizer's miss path then costs what a plain dict costs. Deadlines
        (or a backend whose entries expire by default) make it an ``_expiring_cache``.
        """
        backend = self.__archive__
        tracking = not isinstance(backend, null_archive)
        expiring = bool(self._deadlines) or getattr(backend, "expire_default", None) is not None
        target = _expiring_cache if expiring else cache if tracking else _plain_cache
        if type(self) is not target:
            self.__class__ = target
        if tracking and not self._tracking:
            for key in self:  # memory the new backend has never seen
                self._touched(key)
        self._tracking = tracking

    # --- tracking what memory holds that the backend may not ------------------------------
    def _touched(self, key: Any) -> None:
        unsaved = self._unsaved
        if not unsaved and self.autodump:
            _autodump.register(self)
        unsaved.add(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self._touched(key)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._unsaved.discard(key)

    def update(self, *args: Any, **kwds: Any) -> None:
        for key, value in dict(*args, **kwds).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def pop(self, key: Any, default: Any = _NO_DEFAULT) -> Any:
        self._unsaved.discard(key)
        if default is _NO_DEFAULT:
            return dict.pop(self, key)
        return dict.pop(self, key, default)

    def popitem(self) -> tuple[Any, ...]:
        key, value = dict.popitem(self)
        self._unsaved.discard(key)
        return key, value

    def clear(self) -> None:
        dict.clear(self)
        self._unsaved.clear()

    def __ior__(self, other: Any) -> cache:  # type: ignore[misc]
        self.update(other)
        return self

    # --- expiry ---------------------------------------------------------------------------
    def _now(self) -> float:
        timer = self.timer
        return (self.__archive__.timer if timer is None else timer)()

    def set(self, key: Any, value: Any, expire: float | None = None) -> None:
        """Store ``value`` under ``key``, expiring ``expire`` seconds from now.

        ``expire=None`` uses the backend's default (entries never expire unless the archive
        was made with ``expire=``); ``expire=math.inf`` stores an entry that never expires.
        """
        seconds = getattr(self.__archive__, "expire_default", None) if expire is None else expire
        if seconds is None or seconds == float("inf"):
            self._put(key, value, None)
        else:
            self._put(key, value, self._now() + seconds)

    def _put(self, key: Any, value: Any, deadline: float | None) -> None:
        """Store ``value`` in memory with ``deadline`` (None: never expires)."""
        deadlines = self._deadlines
        if deadline is None:
            deadlines.pop(key, None)
        else:
            deadlines[key] = deadline
            if type(self) is not _expiring_cache:
                self._reclass()
        dict.__setitem__(self, key, value)
        if self._tracking:
            self._touched(key)

    def expire(self, now: float | None = None) -> int:
        """Remove expired entries from memory and from the backend; return how many."""
        now = self._now() if now is None else now
        expired = [key for key, deadline in self._deadlines.items() if deadline <= now]
        for key in expired:
            dict.pop(self, key, None)
            del self._deadlines[key]
            self._unsaved.discard(key)
        return len(expired) + (self.archive.expire() if self.archived() else 0)

    def _outgoing(self, items: dict[Any, Any]) -> dict[Any, Any]:
        """Memory items as the backend stores them: expiring ones enveloped, expired ones not."""
        deadlines = self._deadlines
        if not deadlines:
            return items
        now = self._now()
        out = {}
        for key, value in items.items():
            deadline = deadlines.get(key)
            if deadline is None:
                out[key] = value
            elif deadline > now:
                out[key] = Expiring(value, deadline)
        return out

    def _incoming(self, stored: dict[Any, Any]) -> None:
        """Put backend entries (as stored, expired ones left out) into memory."""
        deadlines = self._deadlines
        if not deadlines and Expiring not in map(type, stored.values()):  # the common case
            dict.update(self, stored)
            self._unsaved.difference_update(stored)
            return
        values = {}
        for key, entry in stored.items():
            if type(entry) is Expiring:
                values[key] = entry.value
                deadlines[key] = entry.deadline
            else:
                values[key] = entry
                if deadlines:
                    deadlines.pop(key, None)
        dict.update(self, values)
        self._unsaved.difference_update(values)
        if deadlines and type(self) is not _expiring_cache:
            self._reclass()

    @property
    def unsaved(self) -> frozenset[Any]:
        """Keys written to memory since they were last loaded or dumped."""
        return frozenset(self._unsaved)

    # --- the backend ----------------------------------------------------------------------
    @property
    def archive(self) -> Any:
        if not isinstance(self.__archive__, Archive):  # e.g. an object pickled long ago
            self._set_backend(null_archive())
        return self.__archive__

    @archive.setter
    def archive(self, backend: Any) -> None:
        if not isinstance(self.__swap__, null_archive):
            self.__archive__, self.__swap__ = self.__swap__, null_archive()
        self._set_backend(backend)

    @property
    def __type__(self) -> type:
        """The public factory named like the backend's class (``file_archive``, ...)."""
        from klepto import archives

        return getattr(archives, type(self.archive).__name__)  # type: ignore[no-any-return]

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
                self.__swap__, backend = null_archive(), self.__swap__
                self._set_backend(backend)
            elif isinstance(self.archive, null_archive):
                raise ValueError("no valid archive has been set")
        elif not isinstance(self.archive, null_archive):
            self.__swap__ = self.__archive__
            self._set_backend(null_archive())

    def drop(self) -> None:
        """Detach the backend (nothing is deleted); raises if there is none."""
        self.archived(True)
        self._set_backend(null_archive())

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
            self._incoming(backend._live_stored())
            return
        # One bulk read (a single round trip on database and cache servers).
        stored = backend._get_many(list(keys))
        for entry in stored.values():
            if type(entry) is Expiring:  # the clock is read only for expiring entries
                now = backend.timer()
                stored = {
                    key: entry
                    for key, entry in stored.items()
                    if type(entry) is not Expiring or entry.deadline > now
                }
                break
        self._incoming(stored)

    def dump(self, *keys: Any) -> None:
        """Copy memory entries to the backend: all of them, or just ``keys`` present."""
        backend = self.archive
        if not keys:
            backend.update(self._outgoing(dict(self)))
            self._unsaved.clear()
            return
        present = {key: dict.__getitem__(self, key) for key in keys if dict.__contains__(self, key)}
        if present:
            backend.update(self._outgoing(present))
            self._unsaved.difference_update(present)

    def flush(self) -> None:
        """Write the unsaved entries (if a real backend is attached)."""
        if self._unsaved and self.archived():
            self.dump(*list(self._unsaved))

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

    def to_frame(self) -> Any:
        """Memory and backend contents as a pandas DataFrame (extra ``pandas``; spec 7.11)."""
        from klepto.archives._frame import _to_frame

        return _to_frame(self)

    def close(self) -> None:
        """Write unsaved entries (unless ``autodump`` is False), then close the backend."""
        if self.autodump:
            self.flush()
        _autodump.unregister(self)
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

    def __reduce__(self) -> tuple[Any, ...]:
        state: tuple[Any, ...] = (dict(self), self.__archive__, self.__swap__)
        if self._deadlines:
            state += (dict(self._deadlines),)
        return (_rebuild_cache, state)


def _rebuild_cache(
    contents: dict[Any, Any], backend: Any, swap: Any, deadlines: dict[Any, float] | None = None
) -> cache:
    # Whether these entries were saved is unknown here: count them as unsaved (a redundant
    # write at exit is cheap; a lost result is not).
    front = cache(contents, archive=backend)
    front.__swap__ = swap
    if deadlines:
        front._deadlines.update(deadlines)
        front._reclass()
    return front


class _plain_cache(cache):
    """A ``cache`` with no backend: nothing to save, so writes skip the bookkeeping."""

    __setitem__ = dict.__setitem__
    __delitem__ = dict.__delitem__
    update = dict.update
    setdefault = dict.setdefault  # type: ignore[assignment]
    pop = dict.pop  # type: ignore[assignment]
    popitem = dict.popitem

    def clear(self) -> None:
        dict.clear(self)
        self._unsaved.clear()


class _expiring_cache(cache):
    """A ``cache`` holding entries with deadlines: reads treat expired entries as missing.

    With a backend whose entries expire by default, every write gets that lifetime.
    """

    def _fresh(self, key: Any) -> bool:
        deadline = self._deadlines.get(key)
        return deadline is None or deadline > self._now()

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if not self._fresh(key):
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key) and self._fresh(key):
            return dict.__getitem__(self, key)
        return default

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) and self._fresh(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self._deadlines.pop(key, None)
        self._unsaved.discard(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def pop(self, key: Any, default: Any = _NO_DEFAULT) -> Any:
        fresh = dict.__contains__(self, key) and self._fresh(key)
        value = dict.pop(self, key, _NO_DEFAULT)
        self._deadlines.pop(key, None)
        self._unsaved.discard(key)
        if fresh:
            return value
        if default is _NO_DEFAULT:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[Any, Any]:
        while True:
            key, value = dict.popitem(self)  # KeyError when empty, as a dict's
            self._unsaved.discard(key)
            deadline = self._deadlines.pop(key, None)
            if deadline is None or deadline > self._now():
                return key, value

    def clear(self) -> None:
        dict.clear(self)
        self._unsaved.clear()
        self._deadlines.clear()
