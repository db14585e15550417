"""The records of a ``file_archive``: one per write, in the archive's record file.

Layout (integers little-endian)::

    set      b"S" | digest (16) | key envelope length u32 | key envelope | value envelope
    replace  b"s" | (the same)
    delete   b"D" | digest (16)
    clear    b"C"

``digest`` is the 16-byte BLAKE2b digest of ``stable_bytes(key)`` (``stable_hash`` as
bytes): entries are located by it. The key envelope is ``Packer.pack(key)`` and the value
envelope ``Packer.pack((hex digest, value))``: both checksummed (and HMAC-signed when the
archive has a key), and the value is bound to its key's digest, so a value can never be
returned for another key. A later record for the same digest supersedes an earlier one; a
delete record is a tombstone; a clear record ends everything before it. A set record is
``S`` when its key was absent and ``s`` when it replaces a value (the writer knows: it
holds the lock and is up to date), so other processes keep their counts of live and
superseded records without looking anything up.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from typing import Any

from klepto import _pickleoob
from klepto._canonical import stable_bytes
from klepto._recordbody import CheckedBody, LargeRecord
from klepto.errors import CorruptArchiveError, CorruptionError, SignatureError
from klepto.integrity import BUFFER_LOADERS, Packer, seal_parts

__all__ = [
    "CLEAR",
    "CLEAR_RECORD",
    "DELETE",
    "DIGEST_SIZE",
    "REPLACE",
    "SET",
    "UNUSUAL",
    "EntryCodec",
    "digest_of",
]

SET = 0x53  # "S"
REPLACE = 0x73  # "s"
DELETE = 0x44  # "D"
CLEAR = 0x43  # "C"
DIGEST_SIZE = 16
_SET_HEAD = struct.Struct("<B16sI")
_DELETE = struct.Struct("<B16s")
CLEAR_RECORD = bytes([CLEAR])
_blake2b = hashlib.blake2b


def digest_of(key: Any) -> bytes:
    """The 16-byte digest an entry is located by (``stable_hash(key)`` as bytes)."""
    return _blake2b(stable_bytes(key), digest_size=DIGEST_SIZE).digest()


def marked(head: bytes, replaces: bool) -> bytes:
    """A set record's head (or the whole record) marked as adding a key (``S``) or as
    replacing a value (``s``)."""
    wanted = REPLACE if replaces else SET
    return head if head[0] == wanted else bytes((wanted,)) + head[1:]


def delete_record(digest: bytes) -> bytes:
    return _DELETE.pack(DELETE, digest)


def kind_and_digest(record: bytes, where: dict[Any, Any]) -> tuple[int, bytes | None]:
    """What a record does (``SET``/``DELETE``/``CLEAR``) and to which digest."""
    kind = record[0] if record else -1
    if kind == CLEAR and len(record) == 1:
        return CLEAR, None
    if kind in (SET, REPLACE) and len(record) >= _SET_HEAD.size:
        return kind, record[1:17]
    if kind == DELETE and len(record) == _DELETE.size:
        return DELETE, record[1:17]
    raise CorruptArchiveError(f"unknown file_archive record (kind {kind})", **where)


class EntryCodec:
    """Packs and unpacks set records with one archive's packers."""

    def __init__(self, packer: Packer, key_packer: Packer) -> None:
        self.packer = packer
        self.key_packer = key_packer
        # A serializer that runs no code may also change what it stores (json turns a
        # tuple into a list): such keys must come back as themselves, or be refused.
        self._check_keys = not packer.serializer.executes_code
        # Unsigned pickles are read straight from the record (see _unpack).
        self._fast = packer.key is None and packer.serializer.name in BUFFER_LOADERS
        self._loads = packer.serializer.loads
        # Large arrays and byte arrays go out of band (klepto._pickleoob): written from
        # their own memory, read back without a copy. Needs protocol 5 and a plain envelope.
        protocol = getattr(packer.serializer, "protocol", 0)
        self._oob_protocol = protocol if self._fast and not packer.codec and protocol >= 5 else 0

    def set_record(self, digest: bytes, key: Any, value: Any) -> list[bytes | memoryview]:
        """The set record for ``key`` as parts: its 21-byte head, then the envelopes (kept
        apart so that a large value is never copied into one record before it is written)."""
        key_envelope = self.key_packer.pack(key)
        if self._check_keys:
            self._check_round_trip(digest, key, key_envelope)
        head = _SET_HEAD.pack(SET, digest, len(key_envelope))
        if self._oob_protocol:
            pickled = _pickleoob.dumps((digest.hex(), value), self._oob_protocol)
            if pickled is not None:
                data, buffers = pickled
                if not buffers:  # the ordinary pickle: seal it as pack() would
                    return [head, key_envelope, self.packer.pack_payload(data)]
                parts = seal_parts(_pickleoob.payload_parts(data, buffers))
                return [head, key_envelope, *parts]
        value_envelope = self.packer.pack((digest.hex(), value))
        return [head, key_envelope, value_envelope]

    def _check_round_trip(self, digest: bytes, key: Any, envelope: bytes) -> None:
        if digest_of(self.key_packer.unpack(envelope)) != digest:
            name = self.packer.serializer.name
            raise ValueError(
                f"the {name!r} serializer cannot store the key {key!r} exactly (it would "
                "come back as a different key); use a pickle serializer"
            )

    def _split(self, record: Any, where: dict[Any, Any]) -> tuple[bytes, memoryview, memoryview]:
        if len(record) < _SET_HEAD.size or record[0] not in (SET, REPLACE):
            raise CorruptArchiveError("not a set record", **where)
        _, digest, key_length = _SET_HEAD.unpack_from(record)
        view = memoryview(record)
        start = _SET_HEAD.size + key_length
        if start > len(record):
            raise CorruptArchiveError("set record truncated", **where)
        return digest, view[_SET_HEAD.size : start], view[start:]

    def fast_value(self, record: Any, digest: bytes, path: str, offset: int, key: Any) -> Any:
        """:meth:`value` for the read path: the common case in one step; anything unusual
        (a signed, compressed or damaged record) goes through :meth:`value`."""
        if isinstance(record, LargeRecord):
            return self._large_value(record, digest, path, offset, key)
        value = self.value_in(record, 0, len(record), digest)
        if value is not UNUSUAL:
            return value
        return self.value(record, digest, {"path": path, "offset": offset or None, "key": key})

    def value_in(self, data: bytes | memoryview, start: int, end: int, digest: bytes) -> Any:
        """The value of the checked set record ``data[start:end]`` in the common case (an
        unsigned, uncompressed pickle of this key), read where it lies; ``UNUSUAL`` for
        anything else, which :meth:`value` then reads (or names as damage)."""
        if end - start >= _SET_HEAD.size and self._fast:
            kind, stored, key_length = _SET_HEAD.unpack_from(data, start)
            at = start + _SET_HEAD.size + key_length
            if kind in (SET, REPLACE) and stored == digest and data[at : at + 4] == _PLAIN:
                try:  # the C unpickler; what only dill reads goes through value()
                    payload = _pickle_loads(memoryview(data)[at + _ENVELOPE_HEAD : end])
                except Exception:
                    return UNUSUAL
                # _belongs(), inline (the read path)
                if type(payload) is tuple and len(payload) == 2 and payload[0] == digest.hex():
                    return payload[1]
        return UNUSUAL

    def _large_value(
        self, large: LargeRecord, digest: bytes, path: str, offset: int, key: Any
    ) -> Any:
        """:meth:`fast_value` of a large record: read whole when its value has out-of-band
        buffers (they are then used in place), else as a checked file."""
        # Unchecked, only to choose the reading: the set head, then the value envelope's
        # magic (both usually within the frame's first read: no read of their own).
        head = large.peek(_SET_HEAD.size)
        if len(head) == _SET_HEAD.size:
            start = _SET_HEAD.size + _SET_HEAD.unpack_from(head)[2]
            if large.peek(start + 4)[start:] == _BUFFERED:
                return self._buffered_value(large.whole(), digest, path, offset, key)
        return self._streamed_value(large.checked(), digest, path, offset, key)

    def _buffered_value(
        self, record: memoryview, digest: bytes, path: str, offset: int, key: Any
    ) -> Any:
        """:meth:`fast_value` of a large record read whole and checked: its out-of-band
        buffers are used in place; anything unusual goes through :meth:`value`."""
        where = {"path": path, "offset": offset or None, "key": key}
        kind, stored, key_length = _SET_HEAD.unpack_from(record)
        start = _SET_HEAD.size + key_length  # parsed again: the peek was not checked
        buffered = record[start : start + 4] == _BUFFERED
        if self._fast and buffered and kind in (SET, REPLACE) and stored == digest:
            try:
                payload = _pickleoob.loads(record[start + _ENVELOPE_HEAD :], where)
            except CorruptionError as exc:
                raise CorruptArchiveError(exc.reason, **where) from exc
            if _belongs(payload, digest):
                return payload[1]
        return self.value(record, digest, where)

    def _streamed_value(
        self, body: CheckedBody, digest: bytes, path: str, offset: int, key: Any
    ) -> Any:
        """:meth:`fast_value` of a large record read as a checked file: the pickle is
        loaded straight from the file (see :mod:`klepto._recordbody`)."""
        head = body.read(_SET_HEAD.size)
        if self._fast and len(head) == _SET_HEAD.size:
            kind, stored, key_length = _SET_HEAD.unpack(head)
            start = _SET_HEAD.size + key_length + _ENVELOPE_HEAD
            body.seek(start - _ENVELOPE_HEAD)
            if kind in (SET, REPLACE) and stored == digest and body.read(4) == _PLAIN:
                body.seek(start)
                try:
                    payload = pickle.load(body)
                except CorruptionError:
                    raise
                except Exception:  # what only dill reads: through the serializer, whole
                    body.seek(start)
                    payload = self._loads(body.read())
                if _belongs(payload, digest):
                    return payload[1]
        body.seek(0)
        return self.value(body.read(), digest, {"path": path, "offset": offset or None, "key": key})

    def value(self, record: Any, digest: bytes, where: dict[Any, Any]) -> Any:
        """The value in a set record that must belong to ``digest``."""
        stored, _, envelope = self._split(record, where)
        if stored != digest:
            raise CorruptArchiveError("record belongs to another key", **where)
        return self._bound_value(envelope, digest, where)

    def _bound_value(self, envelope: memoryview, digest: bytes, where: dict[Any, Any]) -> Any:
        payload = _unpack(self.packer, envelope, where)
        if not (isinstance(payload, (tuple, list)) and len(payload) == 2):
            raise CorruptArchiveError("malformed value envelope", **where)
        if payload[0] != digest.hex():
            raise CorruptArchiveError("value belongs to another key", **where)
        return payload[1]

    def key(self, record: Any, where: dict[Any, Any]) -> Any:
        """The key in a set record (checked against the record's digest)."""
        digest, envelope, _ = self._split(record, where)
        key = _unpack(self.key_packer, envelope, where)
        if digest_of(key) != digest:
            raise CorruptArchiveError("record holds a key that belongs elsewhere", **where)
        return key

    def item(self, record: Any, where: dict[Any, Any]) -> tuple[Any, Any]:
        """The key and the value of a set record."""
        digest, envelope, value_envelope = self._split(record, where)
        key = _unpack(self.key_packer, envelope, where)
        if digest_of(key) != digest:
            raise CorruptArchiveError("record holds a key that belongs elsewhere", **where)
        return key, self._bound_value(value_envelope, digest, {**where, "key": key})


_pickle_loads = pickle.loads
UNUSUAL: Any = object()  # EntryCodec.value_in: not the common case, read it the long way
_PLAIN = _PLAIN_ENVELOPE = b"KV\x01\x00"  # magic, version 1, no flags: plain envelope
_BUFFERED = b"KV\x01\x04"  # unsigned, with out-of-band buffers (klepto._pickleoob)
_ENVELOPE_HEAD = 8


def _belongs(payload: Any, digest: bytes) -> bool:
    """Whether an unpickled value envelope is ``(hex digest, value)`` of this key."""
    return type(payload) is tuple and len(payload) == 2 and payload[0] == digest.hex()


def _unpack(packer: Packer, envelope: memoryview, where: dict[Any, Any]) -> Any:
    if (
        packer.key is None
        and envelope[:4] == _BUFFERED
        and packer.serializer.name in BUFFER_LOADERS
    ):
        # As below: the frame's checksum covered the payload (and its buffers) already.
        try:
            return _pickleoob.loads(envelope[_ENVELOPE_HEAD:], where)
        except CorruptionError as exc:
            raise CorruptArchiveError(exc.reason, **where) from exc
    if packer.key is None and envelope[:4] == _PLAIN_ENVELOPE:
        # The record's frame checksum has just covered these very bytes: checking the
        # envelope's own checksum (and copying the payload for it) would only repeat that.
        payload = envelope[_ENVELOPE_HEAD:]
        serializer = packer.serializer
        return serializer.loads(payload if serializer.name in BUFFER_LOADERS else bytes(payload))  # type: ignore[arg-type]
    try:
        return packer.unpack(envelope, where=where)  # type: ignore[arg-type]
    except (CorruptArchiveError, SignatureError):
        raise
    except CorruptionError as exc:
        raise CorruptArchiveError(exc.reason, **where) from exc
