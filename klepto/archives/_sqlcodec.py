"""What goes into an SQL archive's row, and the settings that say how it was made.

A row is ``(kdigest, kbytes, vbytes)``: ``stable_hash(key)``, the key sealed, the value
sealed by the archive's :class:`~klepto.integrity.Packer`. Keys made of plain built-ins
(str, int, float, bool, None, bytes, and tuples/frozensets of them) are stored in the
code-free ``safe`` format (tag ``S``), so listing an archive never unpickles anything for
them; other keys go through the value packer (tag ``P``), signed when the archive is.

Settings (kind, format version, serializer, protocol, codec, signed, serialized) are
recorded as JSON in ``klepto_settings`` when the archive is created and honoured on reopen;
a contradicting argument raises ``ValueError``.
"""

from __future__ import annotations

import json
from typing import Any

from klepto import _safeformat
from klepto._canonical import stable_hash
from klepto.errors import CorruptArchiveError, CorruptionError
from klepto.integrity import BUFFER_LOADERS, Packer, plain_payload, resolve_key, seal, unseal

__all__ = ["FORMAT_VERSION", "PlainSerializer", "RowCodec", "open_packer"]

FORMAT_VERSION = 1
_SAFE_KEY = b"S"
_PACKED_KEY = b"P"
_PLAIN_KEY_TYPES = frozenset({str, int, float, bool, type(None), bytes})
_SETTING_NAMES = ("serialized", "serializer", "protocol", "codec")


class PlainSerializer:
    """``serialized=False``: str, int, float, bool, bytes and None as tagged raw bytes.

    Nothing is pickled or evaluated; any other value is refused with ``TypeError``.
    """

    name = "plain"
    executes_code = False
    _TAGS = {str: b"s", bytes: b"b", int: b"i", float: b"f", bool: b"?"}

    def dumps(self, obj: Any) -> bytes:
        if obj is None:
            return b"n"
        tag = self._TAGS.get(type(obj))
        if tag is None:
            raise TypeError(
                f"serialized=False stores only str, int, float, bool, bytes or None values, "
                f"not {type(obj).__qualname__}"
            )
        if tag == b"b":
            return tag + obj  # type: ignore[no-any-return]
        if tag == b"s":
            return tag + obj.encode("utf-8", "surrogatepass")  # type: ignore[no-any-return]
        return tag + repr(int(obj) if tag == b"?" else obj).encode("ascii")

    def loads(self, data: bytes) -> Any:
        tag, body = data[:1], bytes(data[1:])
        decoders = {
            b"n": lambda b: None,
            b"b": lambda b: b,
            b"s": lambda b: b.decode("utf-8", "surrogatepass"),
            b"i": int,
            b"f": float,
            b"?": lambda b: bool(int(b)),
        }
        if tag not in decoders:
            raise ValueError(f"not a plain value (tag {tag!r})")
        return decoders[tag](body)  # type: ignore[operator]

    def settings(self) -> dict[str, Any]:
        return {"serializer": self.name}


def _plain_key(key: Any) -> bool:
    """True when the safe format gives ``key`` back with exactly its type and value."""
    kind = type(key)
    if kind in _PLAIN_KEY_TYPES:
        return True
    if kind is tuple or kind is frozenset:
        return all(_plain_key(item) for item in key)
    return False


def _named(exc: CorruptionError) -> CorruptionError:
    """Report damage as CorruptArchiveError (signature errors keep their own class)."""
    if type(exc) is not CorruptionError:
        return exc
    return CorruptArchiveError(exc.reason, path=exc.path, offset=exc.offset, key=exc.key)


class RowCodec:
    """Turns ``(key, value)`` into a row and back, for one archive (``where`` names it)."""

    def __init__(self, packer: Packer, where: str) -> None:
        self.packer = packer
        self.where = where
        # Unsigned stores whose serializer reads from a buffer check a plain envelope
        # themselves (see unpack_value); anything else goes to the packer.
        quick = packer.key is None and packer.serializer.name in BUFFER_LOADERS
        self._quick_loads = packer.serializer.loads if quick else None

    def digest(self, key: Any) -> str:
        return stable_hash(key)

    def row(self, key: Any, value: Any) -> dict[str, Any]:
        digest = stable_hash(key)
        return {
            "kdigest": digest,
            "kbytes": self.pack_key(key),
            "vbytes": self.pack_value(value, digest),
        }

    def pack_value(self, value: Any, digest: str) -> bytes:
        """The sealed value, bound to its key's digest: copied onto another key it is refused."""
        return self.packer.pack(value, context=digest.encode("ascii"))

    def pack_key(self, key: Any) -> bytes:
        if _plain_key(key):
            return _SAFE_KEY + seal(_safeformat.dumps(key), key=self.packer.key)
        if not self.packer.serializer.executes_code:
            self._check_faithful(key)
        return _PACKED_KEY + self.packer.pack(key)

    def _check_faithful(self, key: Any) -> None:
        serializer = self.packer.serializer
        again = serializer.loads(serializer.dumps(key))
        if stable_hash(again) != stable_hash(key):
            raise TypeError(
                f"the {serializer.name!r} serializer cannot store the key {key!r} faithfully; "
                "use plain keys or a pickle serializer"
            )

    def unpack_key(self, blob: bytes, digest: str) -> Any:
        where = {"path": self.where, "key": f"<digest {digest}>"}
        blob = bytes(blob)
        tag, body = blob[:1], blob[1:]
        try:
            if tag == _SAFE_KEY:
                key = _safeformat.loads(unseal(body, key=self.packer.key, where=where)[0])
            elif tag == _PACKED_KEY:
                key = self.packer.unpack(body, where=where)
            else:
                raise CorruptionError("unknown key format", **where)  # type: ignore[arg-type]
        except CorruptionError as exc:
            named = _named(exc)
            if named is exc:
                raise
            raise named from exc
        if stable_hash(key) != digest:
            raise CorruptArchiveError("stored key does not match its digest", **where)  # type: ignore[arg-type]
        return key

    def unpack_value(self, blob: bytes, key: Any, digest: str | None = None) -> Any:
        context = (stable_hash(key) if digest is None else digest).encode("ascii")
        loads = self._quick_loads
        if loads is not None:
            # The packer's own check, without its general case (a single-key read is
            # mostly this); anything else goes on to the packer, which names the damage.
            body = plain_payload(blob, context)
            if body is not None:
                return loads(body)  # type: ignore[arg-type]  # (a buffer loader)
        try:
            return self.packer.unpack(blob, where={"path": self.where, "key": key}, context=context)
        except CorruptionError as exc:
            named = _named(exc)
            if named is exc:
                raise
            raise named from exc


def requested(kwds: dict[str, Any]) -> dict[str, Any]:
    """Pop the storage settings the caller passed (normalised; absent ones are left out)."""
    given = {name: kwds.pop(name) for name in _SETTING_NAMES if name in kwds}
    given = {name: value for name, value in given.items() if value is not None}
    if isinstance(given.get("protocol"), str):  # classic: a str protocol selects json
        given.pop("protocol")
        given.setdefault("serializer", "json")
    if given.get("serialized") is False:
        given.setdefault("serializer", "plain")
    if "serialized" in given:
        given["serialized"] = bool(given["serialized"])
    return given


def _build_packer(settings: dict[str, Any], key: Any, safe: bool) -> Packer:
    serializer = settings.get("serializer", "dill")
    if serializer == "plain":
        return Packer(PlainSerializer(), settings.get("codec"), key=key, safe=safe)
    if serializer == "dill":  # the same format, written and read by the C pickler when it can
        from klepto.archives._quickpickle import QuickDillSerializer

        quick = QuickDillSerializer(settings.get("protocol"))
        return Packer(quick, settings.get("codec"), key=key, safe=safe)
    return Packer(
        settings.get("serializer", "dill"),
        settings.get("codec"),
        key=key,
        safe=safe,
        protocol=settings.get("protocol"),
    )


def new_settings(kind: str, given: dict[str, Any], key: Any, safe: bool) -> dict[str, Any]:
    """The settings a new archive records for ``given`` arguments."""
    packer = _build_packer(given, key, safe)
    serialized = given.get("serialized", packer.serializer.name != "plain")
    return {"kind": kind, "format": FORMAT_VERSION, "serialized": serialized, **packer.settings()}


def open_packer(
    kind: str, stored: dict[str, Any], given: dict[str, Any], key: Any, safe: bool
) -> Packer:
    """The packer for an archive whose recorded settings are ``stored``; check ``given``."""
    if stored.get("kind") != kind:
        raise ValueError(f"this table holds a {stored.get('kind')!r} archive, not {kind!r}")
    if int(stored.get("format", 0)) > FORMAT_VERSION:
        raise ValueError(f"archive format {stored['format']} is newer than this klepto's")
    for name, value in given.items():
        if stored.get(name) != value:
            raise ValueError(
                f"{name}={value!r} contradicts the archive's recorded {name}={stored.get(name)!r}"
            )
    resolved = resolve_key(key)
    if resolved and not stored.get("signed"):
        raise ValueError("this archive is not signed: open it without an HMAC key")
    packer = _build_packer(stored, resolved, safe)
    if stored.get("signed") and not packer.key:
        return Packer.from_settings(stored, key=key, safe=safe)  # raises SignatureError
    return packer


def encode_settings(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


def decode_settings(text: str) -> dict[str, Any]:
    return json.loads(text)  # type: ignore[no-any-return]
