"""The settings of a ``file_archive``: recorded in its file's metadata when it is created.

The metadata of the archive's record file is a small JSON document (covered by the record
file's checksums like everything else in it)::

    {"kind": "file", "format": 1, "serialized": true, "serializer": "dill",
     "protocol": null, "compression": 0, "signed": false}

Reopening reads it, so callers need not repeat the settings; an explicit argument that
contradicts it is a ``ValueError``. ``durable``, ``safe`` and the HMAC key are per-open
choices (the key is never stored).
"""

from __future__ import annotations

import json
from typing import Any

from klepto.errors import CorruptArchiveError

__all__ = ["FORMAT", "KIND", "decode", "encode", "requested", "resolve"]

KIND = "file"
FORMAT = 1
_ENFORCED = ("serialized", "serializer", "protocol", "compression")
_PICKLERS = ("dill", "pickle")
_TEXT = ("json", "safe")


def requested(
    serialized: bool | None,
    protocol: int | str | None,
    serializer: str | None,
    compression: int | bool | None,
) -> dict[str, Any]:
    """The settings a caller asked for explicitly (absent means "as stored, or default").

    Classic ``protocol``: an int is a pickle protocol; any str selects json (``'safe'``
    selects klepto's tagged json).
    """
    asked: dict[str, Any] = {}
    if serialized is not None:
        asked["serialized"] = bool(serialized)
    if isinstance(protocol, str):
        serializer = serializer or (protocol if protocol in _TEXT else "json")
    elif protocol is not None:
        asked["protocol"] = int(protocol)
    if serializer is not None:
        asked["serializer"] = serializer
    if asked.get("serialized") is False:
        asked["serializer"] = "literal"
    if compression is not None:
        asked["compression"] = _level(compression)
    return asked


def _level(compression: int | bool) -> int:
    level = 3 if compression is True else int(compression)
    if not 0 <= level <= 9:
        raise ValueError(f"compression must be a zlib level 0-9, not {compression!r}")
    return level


def resolve(stored: dict[str, Any] | None, asked: dict[str, Any], signed: bool) -> dict[str, Any]:
    """The full settings: ``stored`` ones checked against ``asked``, or new ones."""
    if stored is None:
        return _new(asked, signed)
    for name in _ENFORCED:
        if name in asked and asked[name] != stored.get(name):
            raise ValueError(
                f"this file_archive was created with {name}={stored.get(name)!r}; "
                f"it cannot be opened with {name}={asked[name]!r}"
            )
    return dict(stored)


def _new(asked: dict[str, Any], signed: bool) -> dict[str, Any]:
    serialized = asked.get("serialized", True)
    serializer = asked.get("serializer", "dill" if serialized else "literal")
    if serializer == "literal" and serialized:
        raise ValueError("serializer='literal' is spelled serialized=False")
    if "protocol" in asked and serializer not in _PICKLERS:
        raise ValueError(f"an integer protocol needs a pickle serializer, not {serializer!r}")
    return {
        "kind": KIND,
        "format": FORMAT,
        "serialized": serialized,
        "serializer": serializer,
        "protocol": asked.get("protocol") if serializer in _PICKLERS else None,
        "compression": asked.get("compression", 0),
        "signed": signed,
    }


def encode(settings: dict[str, Any]) -> bytes:
    return json.dumps(settings, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode(blob: bytes | None, path: str) -> dict[str, Any]:
    """The settings in a record file's metadata; errors name the file."""
    if blob is None:
        raise CorruptArchiveError("record file without file_archive settings", path=path)
    try:
        settings = json.loads(blob)
    except ValueError as exc:
        raise CorruptArchiveError(f"unreadable file_archive settings ({exc})", path=path) from exc
    if not isinstance(settings, dict) or settings.get("kind") != KIND:
        kind = settings.get("kind") if isinstance(settings, dict) else None
        raise ValueError(f"{path} is a klepto record file but not a file_archive (kind={kind!r})")
    if settings.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a file_archive of format {settings.get('format')!r}; "
            f"this klepto reads format {FORMAT}"
        )
    return settings
