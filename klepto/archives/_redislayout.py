"""Where a ``redis_archive`` keeps things in Redis, and how its URL and name are read.

Everything of the archive named ``NAME`` lives under the prefix ``klepto:NAME:``::

    klepto:NAME:settings          string: the settings, JSON (written once, SET NX)
    klepto:NAME:<32 hex digits>   hash, one per entry, named by stable_hash(key):
                                      k  the key, sealed (what iteration returns)
                                      v  the value, sealed by the archive's Packer
                                      d  the deadline (timer reading), expiring entries only;
                                         the hash then has the matching Redis TTL
    klepto:NAME:lock:<digest>     string: the token of the holder of lock(key), with a TTL

Names are restricted to letters, digits, ``_``, ``-`` and ``.`` so that no name is a prefix
pattern of another (``:`` ends every name) and no glob character reaches ``SCAN MATCH``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_URL",
    "Layout",
    "check_name",
    "hide_password",
    "split_location",
]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_NAME = "memo"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_DIGEST = re.compile(rb"[0-9a-f]{32}")
_SCHEMES = ("redis://", "rediss://", "unix://")

# Lua run atomically on the server. add(): store only if the entry is absent (HSETNX on the
# value field decides). Locks: renew or release only while the caller's token is there.
ADD_SCRIPT = """
if redis.call('hsetnx', KEYS[1], 'v', ARGV[2]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'k', ARGV[1])
if ARGV[3] ~= '' then
  redis.call('hset', KEYS[1], 'd', ARGV[3])
  redis.call('pexpire', KEYS[1], ARGV[4])
end
return 1
"""
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
RENEW_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def check_name(name: Any) -> str:
    """``name`` if it can name a Redis archive, else ``ValueError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid redis_archive name {name!r}: use letters, digits, '_', '-' and '.' "
            "(at most 128 characters)"
        )
    return name


def is_url(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(_SCHEMES)


def split_location(text: str) -> tuple[str, str | None]:
    """``(url, name)`` of ``redis://host:port/db?name=NAME`` (name None when absent)."""
    parts = urlsplit(text)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "name"]
    rest = urlencode([(key, value) for key, value in query if key != "name"])
    return urlunsplit(parts._replace(query=rest)), (names[-1] if names else None)


def hide_password(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Layout:
    """The Redis key names of one archive."""

    def __init__(self, name: str) -> None:
        self.prefix = f"klepto:{check_name(name)}:".encode()
        self.settings = self.prefix + b"settings"
        # Exactly 32 characters after the prefix: entries, never settings or locks.
        self.match = self.prefix + b"?" * 32

    def entry(self, digest: str) -> bytes:
        return self.prefix + digest.encode()

    def lock(self, digest: str) -> bytes:
        return self.prefix + b"lock:" + digest.encode()

    def digest_of(self, entry: bytes) -> str | None:
        """The digest an entry name holds, None for anything else."""
        tail = entry[len(self.prefix) :]
        return tail.decode() if entry.startswith(self.prefix) and _DIGEST.fullmatch(tail) else None
