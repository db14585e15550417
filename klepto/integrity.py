"""Value envelopes: checksum every stored value, optionally sign it, refuse what fails.

A :class:`Packer` is what a store uses to turn a value into the bytes it keeps: serialize,
compress (optional), then seal in an envelope::

    b"KV" | version u8 | flags u8 | crc32 u32 (big-endian, over every byte after it) |
    [HMAC-SHA256 tag, 32 bytes, when flags & SIGNED] | payload

``flags & BUFFERS``: the payload is a pickle with out-of-band buffers
(:mod:`klepto._pickleoob`), never signed or compressed; only pickle serializers read it.

The CRC catches truncation, bit flips and zeroed pages. The HMAC (with a key the caller
passes, or ``KLEPTO_HMAC_KEY`` from the environment, and which is never stored with the data)
catches forgery: a signed store refuses an unsigned or tampered payload *before* anything is
unpickled. In safe mode a packer refuses to unpickle at all unless every payload is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import Any

from klepto import _pickleoob
from klepto._crc import crc32
from klepto.errors import CorruptionError, SignatureError, UnsafeDataError
from klepto.serializers import Codec, Serializer, get_codec, get_serializer

MAGIC = b"KV"
VERSION = 1
SIGNED = 0x01
COMPRESSED = 0x02
BUFFERS = 0x04
_HEADER = struct.Struct(">2sBBI")
_TAG_SIZE = 32
KEY_ENV = "KLEPTO_HMAC_KEY"

__all__ = ["KEY_ENV", "Packer", "plain_payload", "resolve_key", "seal", "unseal"]


def resolve_key(key: bytes | str | None = None) -> bytes | None:
    """The signing key: ``key`` if given, else ``$KLEPTO_HMAC_KEY``, else ``None``."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if key is not None and not key:
        raise ValueError("an HMAC key must not be empty")
    return key


def seal(
    payload: bytes, *, key: bytes | None = None, compressed: bool = False, context: bytes = b""
) -> bytes:
    """Wrap ``payload`` in a checksummed (and, with ``key``, signed) envelope.

    ``context`` (for example the digest of the key a value is stored under) is covered by
    the checksum and the signature but not stored: :func:`unseal` must be given the same
    context, so an envelope copied to another key is refused (and, when signed, cannot be
    forged to fit).
    """
    flags = (SIGNED if key else 0) | (COMPRESSED if compressed else 0)
    tag = _sign(key, flags, payload, context) if key else b""
    body = tag + payload
    crc = crc32(body, _crc_start(flags, context))
    return _HEADER.pack(MAGIC, VERSION, flags, crc) + body


def _crc_start(flags: int, context: bytes) -> int:
    start = crc32(bytes((VERSION, flags)))
    # An empty context leaves the CRC as it was before contexts existed.
    return crc32(context, start) if context else start


_PLAIN_START = _crc_start(0, b"")  # the CRC seed of an unsigned, uncompressed envelope
_PLAIN_HEAD = MAGIC + bytes((VERSION, 0))
_COPY_BELOW = 4096  # a smaller payload is sliced off (a copy, cheaper than a memoryview)


def plain_payload(blob: bytes, context: bytes = b"") -> bytes | memoryview | None:
    """The payload of an intact unsigned, uncompressed envelope bound to ``context``;
    ``None`` for anything else (signed, compressed, out of band, damaged), which the caller
    then unpacks in full (:meth:`Packer.unpack` names the damage). The read path of a
    store whose values are mostly plain pickles."""
    if blob[:4] != _PLAIN_HEAD or len(blob) < _HEADER.size:
        return None
    body = blob[_HEADER.size :] if len(blob) < _COPY_BELOW else memoryview(blob)[_HEADER.size :]
    seed = crc32(context, _PLAIN_START) if context else _PLAIN_START
    return body if crc32(body, seed) == _HEADER.unpack_from(blob)[3] else None


_BUFFERS_START = _crc_start(BUFFERS, b"")


def seal_parts(parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """The envelope (flagged ``BUFFERS``, unsigned) of the payload ``parts`` (those of
    ``_pickleoob.payload_parts``), as parts: a large buffer is never copied."""
    crc = _BUFFERS_START
    for part in parts:
        crc = crc32(part, crc)
    return [_HEADER.pack(MAGIC, VERSION, BUFFERS, crc) + parts[0], *parts[1:]]


BUFFER_LOADERS = ("pickle", "dill")  # serializers that load from a memoryview


def unseal(
    blob: bytes,
    *,
    key: bytes | None = None,
    where: dict[Any, Any] | None = None,
    context: bytes = b"",
) -> tuple[bytes, int]:
    """Check an envelope and return ``(payload, flags)``.

    Raises :class:`CorruptionError` for damage (or an envelope sealed with another
    ``context``) and :class:`SignatureError` when ``key`` is given and the payload is
    unsigned or its signature does not match. ``where`` (path, offset, key) is put into the
    error message.
    """
    payload, flags = _opened(blob, key=key, where=where, context=context)
    return bytes(payload), flags


def _opened(
    blob: bytes,
    *,
    key: bytes | None = None,
    where: dict[Any, Any] | None = None,
    context: bytes = b"",
) -> tuple[bytes | memoryview, int]:
    """:func:`unseal`, with an unsigned payload as a ``memoryview`` of ``blob`` (not
    copied: a large value is then not allocated twice)."""
    where = where or {}
    view = memoryview(blob)
    if len(view) < _HEADER.size:
        raise CorruptionError(f"value envelope truncated ({len(view)} bytes)", **where)
    magic, version, flags, crc = _HEADER.unpack_from(view)
    if magic != MAGIC or version != VERSION:
        raise CorruptionError("not a klepto value envelope (bad magic or version)", **where)
    body = view[_HEADER.size :]
    if key and not flags & SIGNED:  # refused whatever its checksum says: nobody signed it
        raise SignatureError("unsigned value in a signed store", **where)
    if crc32(body, _crc_start(flags, context)) != crc:
        raise CorruptionError("value checksum mismatch", **where)
    if not flags & SIGNED:
        return body, flags
    if len(body) < _TAG_SIZE:
        raise CorruptionError("signed value envelope truncated", **where)
    payload = bytes(body[_TAG_SIZE:])
    if key is None:
        raise SignatureError("value is signed; provide the HMAC key to read it", **where)
    if not hmac.compare_digest(bytes(body[:_TAG_SIZE]), _sign(key, flags, payload, context)):
        raise SignatureError("value signature mismatch (forged or tampered)", **where)
    return payload, flags


def _sign(key: bytes, flags: int, payload: bytes, context: bytes = b"") -> bytes:
    mac = hmac.new(key, bytes((VERSION, flags)), hashlib.sha256)
    if context:  # length-prefixed, so context and payload cannot trade bytes
        mac.update(len(context).to_bytes(4, "big") + context)
    mac.update(payload)
    return mac.digest()


class Packer:
    """Serialize + compress + seal, and the reverse, with the store's settings.

    ``safe=True`` refuses any serializer that executes code unless a signing key is set, so
    that loading data written by someone else can never run it.
    """

    def __init__(
        self,
        serializer: str | Serializer | None = "dill",
        codec: str | Codec | None = None,
        *,
        key: bytes | str | None = None,
        safe: bool = False,
        protocol: int | None = None,
    ) -> None:
        options = {"protocol": protocol} if protocol is not None else {}
        self.serializer = get_serializer(serializer, **options)
        self.codec = get_codec(codec)
        self.key = resolve_key(key)
        self.safe = safe
        if safe and self.serializer.executes_code and not self.key:
            raise UnsafeDataError(
                f"safe mode refuses the {self.serializer.name!r} serializer without an HMAC "
                "key: use serializer='safe' (or 'json'), or sign with key=..."
            )

    def settings(self) -> dict[str, Any]:
        """What a store records about how its values are made (never the key itself)."""
        out = dict(self.serializer.settings())
        out["codec"] = self.codec.name if self.codec else None
        out["signed"] = bool(self.key)
        return out

    @classmethod
    def from_settings(
        cls, settings: dict[str, Any], *, key: bytes | str | None = None, safe: bool = False
    ) -> Packer:
        """Rebuild the packer a store was created with; a signed store needs its key."""
        packer = cls(
            settings.get("serializer", "dill"),
            settings.get("codec"),
            key=key,
            safe=safe,
            protocol=settings.get("protocol"),
        )
        if settings.get("signed") and not packer.key:
            raise SignatureError(f"this store is signed: pass key=... or set ${KEY_ENV}")
        return packer

    def pack(self, obj: Any, *, context: bytes = b"") -> bytes:
        """The bytes to store for ``obj`` (bound to ``context``: see :func:`seal`)."""
        return self.pack_payload(self.serializer.dumps(obj), context=context)

    def pack_payload(self, payload: bytes, *, context: bytes = b"") -> bytes:
        """:meth:`pack` of what this packer's serializer made of an object."""
        if self.key is None and self.codec is None and not context:  # seal(), flat: hot path
            return _HEADER.pack(MAGIC, VERSION, 0, crc32(payload, _PLAIN_START)) + payload
        if self.codec is not None:
            payload = self.codec.compress(payload)
        return seal(payload, key=self.key, compressed=self.codec is not None, context=context)

    def unpack(
        self, blob: bytes, *, where: dict[Any, Any] | None = None, context: bytes = b""
    ) -> Any:
        """The object stored as ``blob``; integrity is checked before anything is decoded."""
        payload, flags = _opened(blob, key=self.key, where=where, context=context)
        if flags & BUFFERS:
            return self._buffered(payload, flags, where or {})
        if flags & COMPRESSED:
            if self.codec is None:
                raise CorruptionError(
                    "compressed value in a store without a codec", **(where or {})
                )
            payload = self.codec.decompress(payload)  # type: ignore[arg-type]  # (any buffer)
        elif self.serializer.name not in BUFFER_LOADERS:
            payload = bytes(payload)
        return self.serializer.loads(payload)  # type: ignore[arg-type]

    def _buffered(self, payload: bytes | memoryview, flags: int, where: dict[Any, Any]) -> Any:
        """A payload with out-of-band buffers; only a pickle store ever reads one (a json
        or safe store must never unpickle, whatever an envelope's flags claim)."""
        if flags != BUFFERS or self.serializer.name not in BUFFER_LOADERS:
            raise CorruptionError("out-of-band buffers where this store has none", **where)
        return _pickleoob.loads(payload, where)
