"""The settings file of a ``dir_archive``: how its entries are written, recorded at creation.

``<root>/.klepto`` is a small JSON document, published once and atomically (written to a
temporary file, then hard-linked into place, which fails if another process got there
first), so a reader sees no settings file or a whole one, and every process that creates
the same archive concurrently ends up using the first one's settings. It carries its own
checksum: damage raises :class:`~klepto.errors.CorruptArchiveError` on open.

Recorded and enforced on reopen (a contradicting explicit argument raises ``ValueError``):
``serialized``, ``compression``, ``serializer``, ``protocol`` and ``signed``. ``fast`` is
recorded as the default for later opens; entries describe their own layout, so an open may
choose differently. ``memmode``, ``memsize`` and ``permissions`` are per-open choices.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from typing import Any

from klepto._fs import fsync_dir, new_temp_file, write_all
from klepto.archives._dirio import move_if_absent
from klepto.errors import CorruptArchiveError

__all__ = ["FORMAT", "SETTINGS_NAME", "publish", "read", "requested", "resolve"]

SETTINGS_NAME = ".klepto"
FORMAT = 1
_ENFORCED = ("serialized", "compression", "serializer", "protocol")
_PICKLERS = ("dill", "pickle")
_TEXT_SERIALIZERS = ("json", "safe")


def requested(
    serialized: bool | None,
    compression: int | bool | None,
    protocol: int | str | None,
    serializer: str | None,
) -> dict[str, Any]:
    """The settings a caller asked for explicitly (``None`` means "as stored, or default")."""
    asked: dict[str, Any] = {}
    if serialized is not None:
        asked["serialized"] = bool(serialized)
    if compression is not None and asked.get("serialized", True):
        asked["compression"] = _level(compression)
    if isinstance(protocol, str):
        serializer = serializer or (protocol if protocol in _TEXT_SERIALIZERS else "json")
    elif protocol is not None:
        asked["protocol"] = int(protocol)
    if serializer is not None:
        asked["serializer"] = serializer
    if asked.get("serialized") is False:
        asked["serializer"] = "literal"
    return asked


def _level(compression: int | bool) -> int:
    level = 3 if compression is True else int(compression)
    if not 0 <= level <= 9:
        raise ValueError(f"compression must be a zlib level 0-9, not {compression!r}")
    return level


def resolve(
    stored: dict[str, Any] | None, asked: dict[str, Any], fast: bool | None, signed: bool
) -> dict[str, Any]:
    """The full settings: ``stored`` ones checked against ``asked``, or new ones."""
    if stored is None:
        return _new_settings(asked, fast, signed)
    if stored.get("kind") != "dir" or stored.get("format") != FORMAT:
        raise ValueError(
            f"not a dir_archive of format {FORMAT} (settings say kind={stored.get('kind')!r}, "
            f"format={stored.get('format')!r})"
        )
    for name in _ENFORCED:
        if name in asked and asked[name] != stored.get(name):
            raise ValueError(
                f"this dir_archive was created with {name}={stored.get(name)!r}; "
                f"it cannot be opened with {name}={asked[name]!r}"
            )
    return dict(stored)


def _new_settings(asked: dict[str, Any], fast: bool | None, signed: bool) -> dict[str, Any]:
    serialized = asked.get("serialized", True)
    serializer = asked.get("serializer", "dill" if serialized else "literal")
    if serializer == "literal" and serialized:
        raise ValueError("serializer='literal' is spelled serialized=False")
    compression = asked.get("compression", 0) if serialized else 0
    protocol = asked.get("protocol") if serializer in _PICKLERS else None
    if "protocol" in asked and serializer not in _PICKLERS:
        raise ValueError(f"an integer protocol needs a pickle serializer, not {serializer!r}")
    return {
        "kind": "dir",
        "format": FORMAT,
        "serialized": serialized,
        "serializer": serializer,
        "protocol": protocol,
        "compression": compression,
        "fast": bool(serialized and (fast or compression)),
        "signed": signed,
    }


def read(root: str) -> dict[str, Any] | None:
    """The settings stored in ``root``, ``None`` if there are none yet."""
    path = os.path.join(root, SETTINGS_NAME)
    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise CorruptArchiveError("settings file is a symlink; refusing it", path=path) from exc
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptArchiveError("settings file is not a regular file", path=path)
        raw = handle.read(1 << 16)
    try:
        document = json.loads(raw)
        settings, check = document["settings"], document["check"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptArchiveError(f"unreadable settings file ({exc})", path=path) from exc
    if not isinstance(settings, dict) or _checksum(settings) != check:
        raise CorruptArchiveError("settings file checksum mismatch", path=path)
    return settings


def publish(root: str, settings: dict[str, Any], mode: int | None, durable: bool) -> dict[Any, Any]:
    """Record ``settings`` unless another process already did; return the recorded ones."""
    path = os.path.join(root, SETTINGS_NAME)
    document = json.dumps({"settings": settings, "check": _checksum(settings)}, indent=1)
    fd, temp = new_temp_file(root)
    try:
        try:
            write_all(fd, document.encode("utf-8") + b"\n")
            if mode is not None:
                os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        won = move_if_absent(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    if durable:
        fsync_dir(root)
    if won:
        return settings
    recorded = read(root)
    if recorded is None:  # pragma: no cover - someone deleted it right after creating it
        raise CorruptArchiveError("settings file vanished while opening", path=path)
    return recorded


def _checksum(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()
