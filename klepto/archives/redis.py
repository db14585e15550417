"""``redis_archive``: an archive in a Redis server, shared by every process and host using it.

Each entry is one Redis hash named by a digest of its key, under the archive's own prefix
``klepto:NAME:`` (see :mod:`klepto.archives._redislayout`): the key and the value are sealed
in checksummed envelopes by the archive's :class:`~klepto.integrity.Packer` exactly as in the
other archives, so damage raises :class:`~klepto.errors.CorruptArchiveError` and a signed
archive refuses forged entries before unpickling anything. The settings are recorded in the
namespace when the archive is created and honoured when it is reopened.

Expiring entries (``set(key, value, expire=...)``, ``expire=`` of the factory) get a native
Redis TTL, so Redis deletes them itself; their deadline is kept beside the value for readers.
Bulk operations are pipelined: ``update()`` and ``dump()`` are one ``MULTI``/``EXEC``
(atomic), ``cache.load(*keys)`` one round trip. ``add()`` is atomic (``HSETNX`` in a
server-side script), ``pop()`` too (``MULTI``: read and delete). ``lock(key)`` excludes every
process and host (:mod:`klepto.archives._redislock`). ``size_limit`` is not supported: give
the server a ``maxmemory`` and an eviction policy instead.

redis-py is imported when the first archive is created (extra ``redis``). Each process
connects on first use; an archive pickles by reference (URL, name and settings).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from klepto.archives import _redislayout as layout_
from klepto.archives._base import Archive
from klepto.archives._expiry import MISSING, Expiring
from klepto.errors import StoreConnectionError, require

__all__ = ["open_redis", "redis_archive"]

_BATCH = 500  # entries per pipelined round trip when listing, reading or deleting in bulk
_SCAN_COUNT = 1000
_V, _K, _D = b"v", b"k", b"d"


def _redis() -> Any:
    return require("redis", "redis", "redis_archive")


class redis_archive(Archive):
    """An archive in a Redis database (see the module docstring).

    ``name`` names the archive inside the database (default ``'memo'``); ``url`` is a
    redis-py URL (``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS,
    ``unix://path?db=0``). Keywords: ``serialized``, ``protocol``, ``serializer``,
    ``codec``, ``key`` (HMAC signing key), ``safe`` as for the other archives;
    ``lock_expire`` (seconds a lock of a dead holder lasts, default 30); anything else goes
    to ``redis.Redis.from_url`` (``max_connections``, ``socket_timeout``, ``retry`` ...).
    """

    kind = "redis"

    def __init__(self, name: str | None = None, url: str | None = None, **kwds: Any) -> None:
        self._setup(name or layout_.DEFAULT_NAME, url or layout_.DEFAULT_URL, kwds)
        self._ready()  # connect now: a wrong URL fails here, not at the first lookup

    def _setup(self, name: str, url: str, kwds: dict[str, Any]) -> None:
        from klepto.archives import _sqlcodec

        _redis()
        self._name = layout_.check_name(name)
        self._url = url
        self._layout = layout_.Layout(name)
        self._given = _sqlcodec.requested(kwds)
        self._hmac_key = kwds.pop("key", None)
        self._safe = bool(kwds.pop("safe", False))
        self._lock_expire = float(kwds.pop("lock_expire", 30.0))
        kwds.pop("decode_responses", None)  # entries are bytes
        self._config = kwds
        self._client: Any = None
        self._codec: Any = None
        self._stored: dict[str, Any] = {}
        self._add_script: Any = None
        Archive.__init__(self, id=name, root=layout_.hide_password(url))

    # --- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``URL?name=NAME``, the password hidden."""
        return f"{layout_.hide_password(self._url)}?name={self._name}"

    @name.setter
    def name(self, value: Any) -> None:
        raise ValueError("cannot set new archive")

    def settings(self) -> dict[str, Any]:
        """The settings recorded in Redis for this archive."""
        return dict(self._ready()[1])

    @property
    def client(self) -> Any:
        """This archive's ``redis.Redis`` client (connections are made on first use)."""
        if self._client is None:
            self._client = _redis().Redis.from_url(self._url, **self._config)
        return self._client

    def _where(self) -> str:
        return f"redis_archive {self.name}"

    # --- opening -------------------------------------------------------------------------
    def _ready(self) -> tuple[Any, dict[str, Any]]:
        """``(codec, settings)``, reading (or recording) the settings on first use."""
        if self._codec is None:
            self._open()
        return self._codec, self._stored

    def _open(self) -> None:
        from klepto.archives import _sqlcodec

        errors = _redis().exceptions
        try:
            stored = self._read_or_create_settings()
        except (errors.ConnectionError, errors.ResponseError) as exc:
            raise self._connection_error(exc) from exc
        packer = _sqlcodec.open_packer(self.kind, stored, self._given, self._hmac_key, self._safe)
        self.__state__.update(serialized=stored["serialized"], protocol=stored.get("protocol"))
        self._stored = stored
        self._codec = _sqlcodec.RowCodec(packer, self._where())

    def _read_or_create_settings(self) -> dict[str, Any]:
        from klepto.archives import _sqlcodec

        client, key = self.client, self._layout.settings
        text = client.get(key)
        if text is None:
            new = _sqlcodec.new_settings(self.kind, self._given, self._hmac_key, self._safe)
            client.set(key, _sqlcodec.encode_settings(new), nx=True)  # the first creator wins
            text = client.get(key)
        return _sqlcodec.decode_settings(text.decode())

    def _connection_error(self, exc: Exception) -> StoreConnectionError:
        errors = _redis().exceptions
        text = " ".join(str(exc).split())
        if isinstance(exc, errors.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
            reason = "the server refused the credentials"
        elif isinstance(exc, errors.ConnectionError):
            reason = "the server is unreachable"
        elif "DB index" in text:
            reason = "the database does not exist"
        else:
            reason = "the server refused the request"
        shown = layout_.hide_password(self._url)
        return StoreConnectionError(f"cannot use {shown}: {reason} ({text})")

    # --- entries -------------------------------------------------------------------------
    def _entry(self, key: Any) -> bytes:
        return self._layout.entry(self._codec.digest(key))

    def _decode(self, key: Any, value: bytes | None, deadline: bytes | None) -> Any:
        """The stored form of an entry read as ``(v, d)`` (``MISSING`` if there is none)."""
        if value is None:
            return MISSING
        decoded = self._codec.unpack_value(value, key)
        return decoded if deadline is None else Expiring(decoded, float(deadline))

    def _entry_commands(self, pipe: Any, key: Any, value: Any) -> None:
        """Queue the commands that store ``value`` (maybe an ``Expiring``) under ``key``."""
        codec = self._codec
        name = self._entry(key)
        pipe.delete(name)  # drops a stale deadline field and TTL along with the old value
        if type(value) is not Expiring:
            sealed = codec.pack_value(value, codec.digest(key))
            pipe.hset(name, mapping={_K: codec.pack_key(key), _V: sealed})
            return
        milliseconds = self._ttl_ms(value.deadline)
        if milliseconds > 0:
            sealed = codec.pack_value(value.value, codec.digest(key))
            fields = {_K: codec.pack_key(key), _V: sealed}
            pipe.hset(name, mapping={**fields, _D: repr(value.deadline)})
            pipe.pexpire(name, milliseconds)

    def _ttl_ms(self, deadline: float) -> int:
        """The Redis TTL that ends at ``deadline`` of the archive's timer (<= 0: expired)."""
        return math.ceil((deadline - self._timer()) * 1000)

    # --- backend primitives --------------------------------------------------------------
    def _get(self, key: Any) -> Any:
        if self._codec is None:
            self._open()
        value, deadline = self.client.hmget(self._entry(key), (_V, _D))
        stored = self._decode(key, value, deadline)
        if stored is MISSING:
            raise KeyError(key)
        return stored

    def _get_many(self, keys: list[Any]) -> dict[Any, Any]:
        """The stored entries of ``keys``, read in one pipelined round trip."""
        self._ready()
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._entry(key), (_V, _D))
        found = {}
        for key, (value, deadline) in zip(keys, pipe.execute()):
            stored = self._decode(key, value, deadline)
            if stored is not MISSING:
                found[key] = stored
        return found

    def _contains(self, key: Any) -> bool:
        self._ready()
        return bool(self.client.hexists(self._entry(key), _V))

    def _set(self, key: Any, value: Any) -> None:
        self._ready()
        pipe = self.client.pipeline(transaction=True)
        self._entry_commands(pipe, key, value)
        pipe.execute()

    def _set_many(self, items: list[tuple[Any, Any]]) -> None:
        """All items in one ``MULTI``/``EXEC``: other clients see none of them or all."""
        self._ready()
        pipe = self.client.pipeline(transaction=True)
        for key, value in dict(items).items():
            self._entry_commands(pipe, key, value)
        pipe.execute()

    def _add(self, key: Any, value: Any) -> bool:
        codec, _ = self._ready()
        if self._add_script is None:
            self._add_script = self.client.register_script(layout_.ADD_SCRIPT)
        deadline, ttl = "", 0
        if type(value) is Expiring:
            deadline, ttl = repr(value.deadline), self._ttl_ms(value.deadline)
            if ttl <= 0:
                return not self._contains(key)  # stored and gone at once, if it was absent
            value = value.value
        sealed = codec.pack_value(value, codec.digest(key))
        packed = (codec.pack_key(key), sealed, deadline, ttl)
        return bool(self._add_script(keys=[self._entry(key)], args=packed))

    def _delete(self, key: Any) -> None:
        self._ready()
        if not self.client.delete(self._entry(key)):
            raise KeyError(key)

    def _names(self) -> Iterator[bytes]:
        """The Redis names of the entries (one ``SCAN`` over the database)."""
        self._ready()
        layout = self._layout
        for name in self.client.scan_iter(match=layout.match, count=_SCAN_COUNT):
            if layout.digest_of(name) is not None:
                yield name

    def _read_fields(self, names: list[bytes], fields: tuple[bytes, ...]) -> list[list[Any]]:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(name, fields)
        return list(pipe.execute())

    def _batches(self) -> Iterator[list[bytes]]:
        batch: list[bytes] = []
        for name in self._names():
            batch.append(name)
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _keys(self) -> Iterator[Any]:
        codec, _ = self._ready()
        keys = []
        for names in self._batches():
            for name, (kbytes,) in zip(names, self._read_fields(names, (_K,))):
                if kbytes is not None:  # else it expired or went since the scan
                    keys.append(codec.unpack_key(kbytes, self._layout.digest_of(name)))
        return iter(keys)

    def _len(self) -> int:
        return sum(1 for _ in self._names())

    def _stored_items(self) -> dict[Any, Any]:
        """Every entry as stored, read with pipelined round trips of ``_BATCH`` entries."""
        codec, _ = self._ready()
        out = {}
        for names in self._batches():
            for name, (kbytes, value, deadline) in zip(
                names, self._read_fields(names, (_K, _V, _D))
            ):
                if kbytes is None or value is None:
                    continue  # expired or deleted since the scan
                key = codec.unpack_key(kbytes, self._layout.digest_of(name))
                out[key] = self._decode(key, value, deadline)
        return out

    def _clear(self) -> None:
        for names in self._batches():
            self.client.unlink(*names)

    # --- whole-entry operations ----------------------------------------------------------
    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value (atomically: one caller gets it)."""
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        self._check_open()
        self._ready()
        name = self._entry(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(name, (_V, _D))
        pipe.delete(name)
        (value, deadline), _ = pipe.execute()
        return self._popped(key, self._decode(key, value, deadline), default)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return some ``(key, value)``; ``KeyError`` when empty."""
        self._check_open()
        while True:
            keys = list(self._keys())
            if not keys:
                raise KeyError("popitem(): archive is empty")
            for key in keys:
                value = self.pop(key, _TAKEN)
                if value is not _TAKEN:  # else another client took it (or it expired)
                    return key, value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``archive[key]``, storing ``default`` first if it is missing (atomically)."""
        self._check_open()
        while True:
            if self._add(key, self._wrap(default)):
                return default
            try:
                return self._value(self._live(key))
            except KeyError:
                continue  # deleted (or expired) between the two: try again

    # --- locks and policies ---------------------------------------------------------------
    def lock(self, key: Any) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on ``key`` for every process and host using this archive.

        ``SET NX PX`` with a token, renewed while held, released by a compare-and-delete
        script; a dead holder's lock expires after ``lock_expire`` seconds.
        """
        from klepto.archives._redislock import RedisKeyLocks

        locks = self._key_locks
        if locks is None:
            codec, _ = self._ready()
            locks = RedisKeyLocks(  # type: ignore[assignment]
                lambda: self.client, self._layout, codec.digest, self._lock_expire
            )
            self._key_locks = locks
        return locks.hold(key)  # type: ignore[union-attr]

    @property
    def locks_processes(self) -> bool:
        """True: :meth:`lock` excludes other processes and hosts."""
        return True

    # --- lifecycle -----------------------------------------------------------------------
    def __drop__(self) -> None:
        """Delete every entry and the settings of this archive, and close it."""
        self._check_open()
        self.clear()
        self.client.delete(self._layout.settings)
        self.close()

    def copy(self, name: str | None = None) -> redis_archive:
        """A new archive ``name`` (a name, or a URL with ``?name=``) holding every entry."""
        url, new_name = _location(name, None)
        duplicate = redis_archive(new_name, url if name and layout_.is_url(name) else self._url)
        if (duplicate._url, duplicate._name) != (self._url, self._name):
            duplicate._set_many(list(self._stored_items().items()))
        return duplicate

    def close(self) -> None:
        """Release this process's connections; later use raises ``ArchiveClosedError``."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        super().close()

    def _reopen_kwds(self) -> dict[str, Any]:
        kwds: dict[str, Any] = dict(self._config)
        kwds.update(self._given)
        if self._codec is not None:
            stored = self._stored
            kwds.update({k: stored[k] for k in ("serialized", "serializer", "codec")})
            if stored.get("protocol") is not None:
                kwds["protocol"] = stored["protocol"]
        if self._hmac_key is not None:  # a key given in code travels with the pickle
            kwds["key"] = self._hmac_key
        kwds.update(safe=self._safe, lock_expire=self._lock_expire)
        return kwds

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference: URL, name and settings; the copy connects when first used.
        return (_rebuild, (self._url, self._name, self._reopen_kwds()))

    def __repr__(self) -> str:
        contents = self.__asdict__() if not self._closed else "<closed>"
        return f"redis_archive('{self.name}', {contents}, cached=False)"


_TAKEN = object()


def _rebuild(url: str, name: str, kwds: dict[str, Any]) -> redis_archive:
    archive = redis_archive.__new__(redis_archive)
    archive._setup(name, url, dict(kwds))
    return archive


def _location(name: Any, url: str | None) -> tuple[str, str]:
    """``(url, name)`` from a factory's ``name`` (maybe a URL with ``?name=``) and ``url``."""
    if layout_.is_url(name):
        found_url, found_name = layout_.split_location(name)
        return found_url, found_name or layout_.DEFAULT_NAME
    if url is not None and layout_.is_url(url):
        url, in_url = layout_.split_location(url)
        return url, name or in_url or layout_.DEFAULT_NAME
    return url or layout_.DEFAULT_URL, name or layout_.DEFAULT_NAME


def open_redis(name: Any = None, url: str | None = None, **kwds: Any) -> redis_archive:
    """The factory's opener: ``name`` is an archive name or a ``redis://...?name=`` URL."""
    url, name = _location(name, url)
    return redis_archive(name, url, **kwds)
