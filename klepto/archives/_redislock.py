"""``lock(key)`` of a ``redis_archive``: a lock shared by every process and host.

A holder sets ``klepto:NAME:lock:<digest>`` to a random token with ``SET NX PX`` (only if
nobody holds it, and only for ``expire`` seconds), renews the expiry from a timer thread
while it holds the lock, and releases it with a script that deletes the key only if it
still holds the holder's token: a holder whose lock expired (a process frozen for longer
than ``expire``) never releases somebody else's. A holder that dies stops renewing, and the
lock expires by itself after at most ``expire`` seconds. Waiters poll with a growing pause
(up to :data:`MAX_PAUSE`); threads of one process queue in memory first.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from klepto._keylocks import KeyLocks
from klepto.archives._redislayout import RELEASE_SCRIPT, RENEW_SCRIPT, Layout

__all__ = ["MAX_PAUSE", "RedisKeyLocks"]

log = logging.getLogger("klepto.archives.redis")

#: The longest pause between two attempts to take a held lock, in seconds.
MAX_PAUSE = 0.05
_FIRST_PAUSE = 0.002


class RedisKeyLocks:
    """Per-key locks of one archive: ``hold(key)`` is a context manager."""

    def __init__(
        self,
        client: Callable[[], Any],
        layout: Layout,
        digest: Callable[[Any], str],
        expire: float,
    ) -> None:
        if not expire > 0:
            raise ValueError(f"lock_expire must be a number of seconds > 0, not {expire!r}")
        self._client = client
        self._layout = layout
        self._digest = digest
        self._expire_ms = max(1, int(expire * 1000))
        self._threads = KeyLocks()

    @contextlib.contextmanager
    def hold(self, key: Any) -> Iterator[None]:
        name = self._layout.lock(self._digest(key))
        token = secrets.token_hex(16).encode()
        with self._threads.hold(key):
            self._acquire(name, token)
            stop = threading.Event()
            renewer = threading.Thread(
                target=self._renew, args=(name, token, stop), name="klepto-redis-lock", daemon=True
            )
            renewer.start()
            try:
                yield
            finally:
                stop.set()
                renewer.join()
                self._client().eval(RELEASE_SCRIPT, 1, name, token)

    def _acquire(self, name: bytes, token: bytes) -> None:
        client = self._client()
        pause = _FIRST_PAUSE
        while not client.set(name, token, nx=True, px=self._expire_ms):
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)

    def _renew(self, name: bytes, token: bytes, stop: threading.Event) -> None:
        # A third of the expiry between renewals: two may fail before the lock lapses.
        from redis.exceptions import RedisError

        interval = self._expire_ms / 3000
        while not stop.wait(interval):
            try:
                self._client().eval(RENEW_SCRIPT, 1, name, token, self._expire_ms)
            except RedisError as exc:  # the next turn tries again; the release reports
                log.warning("could not renew the lock %r: %s", name, exc)
