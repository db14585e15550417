"""The on-disk format of one ``dir_archive`` entry: one file holding a key and its value.

Layout (integers big-endian)::

    b"KDE1" | key envelope length u32 | value envelope length u64        16-byte header
    key envelope     Packer.pack(key)
    value envelope   Packer.pack(("v", digest, value))       most entries
                     Packer.pack(("f", digest, pickle, table))   values with array blocks
    [zero padding to a 64-byte boundary, then the raw array blocks listed in the table
     (offset, length, checksum), each starting on a 64-byte boundary]

Both envelopes are checksummed (and HMAC-signed when the store has a key), so everything
that decides what a read returns is verified before it is used: ``digest`` ties the value
to the entry's file name (a file moved under another key's name is detected), and the block
table in the value envelope carries each block's checksum. Header damage shows up as an
envelope that fails its checks. Bytes after the last block are ignored.

In a store with a pickle serializer and no codec, an "f" entry pickles a value holding
contiguous numpy arrays (of at least ``MIN_BLOCK`` bytes, or all of them in a fast archive)
with those arrays replaced by references to raw blocks, so a reader reads them straight
into their arrays, or memory-maps them (``memmode``), instead of copying them through
pickle. (Older writers also made "f" entries with no blocks; they are read as ever.)
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import struct
import sys
from collections.abc import Callable
from typing import Any

from klepto._canonical import stable_hash
from klepto._crc import crc32
from klepto._fs import pread, pread_into
from klepto.archives._quickpickle import c_pickle
from klepto.errors import CorruptArchiveError, CorruptionError, SignatureError
from klepto.integrity import Packer, seal

__all__ = ["ALIGN", "FIRST_READ", "HEADER", "MAGIC", "EntryFormat"]

MAGIC = b"KDE1"
HEADER = struct.Struct(">4sIQ")
ALIGN = 64
_BLOCK = "klepto.block"
_PADDING = bytes(ALIGN)
# np.memmap modes by classic memmode: writable shared maps would let callers change a
# checksummed entry in place, so 'r+' and 'w+' map copy-on-write (changes stay private).
MEMMAP_MODES = {"r": "r", "c": "c", "r+": "c", "w+": "c"}
MIN_BLOCK = 1024  # smaller arrays stay inside the pickle unless the store is fast
FIRST_READ = 8192  # one read covers a typical small entry whole


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


class EntryFormat:
    """Encodes and decodes entries with one store's :class:`Packer` and flags."""

    def __init__(self, packer: Packer, *, fast: bool = False, memmode: str | None = None) -> None:
        self.packer = packer
        # Raw blocks need a pickle serializer and no codec (compressed blocks cannot be mapped).
        self.blocks = packer.codec is None and packer.serializer.executes_code
        # fast: every array is a block (memory-mappable); else only arrays worth a block.
        self.min_block = 1 if fast else MIN_BLOCK
        self.memmode = memmode
        self._check_keys = not packer.serializer.executes_code

    # --- writing --------------------------------------------------------------------------
    def encode(self, digest: str, key: Any, value: Any) -> list[Any]:
        """The chunks of the file for ``key`` (whose ``stable_hash`` is ``digest``)."""
        if self._check_keys:
            self._check_key_round_trip(digest, key)
        key_envelope = self.packer.pack(key)
        blocks: list[memoryview] = []
        if self.blocks:
            value_envelope = self._envelope_with_blocks(digest, value, blocks)
        else:
            value_envelope = self.packer.pack(("v", digest, value))
        header = HEADER.pack(MAGIC, len(key_envelope), len(value_envelope))
        chunks: list[Any] = [header, key_envelope, value_envelope]
        position = HEADER.size + len(key_envelope) + len(value_envelope)
        for view in blocks:
            chunks.append(_PADDING[: _aligned(position) - position])
            chunks.append(view)
            position = _aligned(position) + view.nbytes
        return chunks

    def _envelope_with_blocks(self, digest: str, value: Any, blocks: list[memoryview]) -> bytes:
        """The value envelope of a pickle store; the arrays set apart go to ``blocks``."""
        protocol = self.packer.serializer.protocol  # type: ignore[attr-defined]
        # Most values hold no array worth a block: the C pickler's plain "v" envelope then
        # (what packer.pack would make), read back with one unpickling instead of two.
        found: list[memoryview] = []
        plain = ("v", digest, value)
        data = c_pickle(plain, protocol, _QuickBlockPickler, blocks=found, min_block=self.min_block)
        if data is not None and not found:
            return seal(data, key=self.packer.key)
        data = _dump_with_blocks(value, blocks, protocol, self.min_block)
        table, offset = [], 0
        for view in blocks:
            table.append((offset, view.nbytes, self._block_check(view)))
            offset = _aligned(offset + view.nbytes)
        return self.packer.pack(("f", digest, data, table))

    def _check_key_round_trip(self, digest: str, key: Any) -> None:
        serializer = self.packer.serializer
        if stable_hash(serializer.loads(serializer.dumps(key))) != digest:
            raise ValueError(
                f"the {serializer.name!r} serializer cannot store the key {key!r} exactly "
                "(it would come back as a different key); use a pickle serializer"
            )

    def _block_check(self, view: Any) -> int | str:
        # CRC32 catches damage; a signed store needs a digest an attacker cannot forge.
        if self.packer.key:
            return hashlib.blake2b(view, digest_size=16).hexdigest()
        return crc32(view)

    # --- reading --------------------------------------------------------------------------
    # A read starts with one read of FIRST_READ bytes at offset 0 (the ``head``), which holds
    # a typical entry whole; only a larger or a damaged entry needs its size and more reads.
    def holds(self, head: bytes) -> bool:
        """Whether ``head``, an entry file's start, holds its header and both envelopes:
        then nothing else needs reading (nor checking: the file is at least that long)."""
        if len(head) < HEADER.size:
            return False
        magic, key_length, value_length = HEADER.unpack_from(head)
        return bool(magic == MAGIC and HEADER.size + key_length + value_length <= len(head))

    def complete(
        self, fd: int, head: bytes, size: int, where: dict[Any, Any], value: bool = True
    ) -> bytes:
        """``head`` read on to the end of the envelopes (the key's only, without ``value``),
        its header checked against the file's ``size``."""
        key_length, value_length = self._lengths(head, size, where)
        needed = HEADER.size + key_length + (value_length if value else 0)
        if needed > len(head):
            head += pread(fd, needed - len(head), len(head))
        return head

    def key_from(self, data: bytes, where: dict[Any, Any]) -> Any:
        """The key in ``data`` (see :meth:`holds`), checked to belong to ``where['digest']``."""
        key_length = HEADER.unpack_from(data)[1]
        key = self._unpack(memoryview(data)[HEADER.size : HEADER.size + key_length], where)
        if stable_hash(key) != where["digest"]:
            raise CorruptArchiveError("entry holds a key that belongs elsewhere", **_place(where))
        return key

    def item_from(self, data: bytes, fd: int, where: dict[Any, Any]) -> tuple[Any, Any]:
        """The key and the value in ``data``; array blocks are read from ``fd``."""
        key = self.key_from(data, where)
        return key, self.value_from(data, fd, {**where, "key": key})

    def _lengths(
        self, head: bytes | bytearray, size: int, where: dict[Any, Any]
    ) -> tuple[int, int]:
        if len(head) < HEADER.size:
            raise CorruptArchiveError("entry file truncated (no header)", **_place(where))
        magic, key_length, value_length = HEADER.unpack_from(head)
        if magic != MAGIC:
            raise CorruptArchiveError("not a dir_archive entry (bad magic)", **_place(where))
        if HEADER.size + key_length + value_length > size:
            raise CorruptArchiveError("entry file truncated", **_place(where))
        return key_length, value_length

    def value_from(self, data: bytes, fd: int, where: dict[Any, Any]) -> Any:
        """The value in ``data`` (see :meth:`holds`), checked to belong to ``where['digest']``;
        array blocks are read (or mapped) from ``fd``."""
        _, key_length, value_length = HEADER.unpack_from(data)
        start = HEADER.size + key_length
        payload = self._unpack(memoryview(data)[start : start + value_length], where)
        if not (isinstance(payload, (tuple, list)) and len(payload) in (3, 4)):
            raise CorruptArchiveError("malformed value envelope", **_place(where))
        if payload[1] != where["digest"]:
            raise CorruptArchiveError("entry holds a value of another key", **_place(where))
        if payload[0] == "v" and len(payload) == 3:
            return payload[2]
        if payload[0] != "f" or len(payload) != 4:
            raise CorruptArchiveError("unknown entry kind", **_place(where))
        if not payload[3]:  # no blocks: a plain pickle
            return self.packer.serializer.loads(payload[2])
        area = _aligned(start + value_length)
        source = self._block_source(fd, area, payload[3], where)
        return _load_with_blocks(payload[2], source)

    def _unpack(self, envelope: memoryview, where: dict[Any, Any]) -> Any:
        # The error's place is added here, on failure: a dict less to build on every read.
        try:
            return self.packer.unpack(envelope)  # type: ignore[arg-type]
        except CorruptArchiveError:
            raise
        except SignatureError as exc:
            raise SignatureError(exc.reason, **_place(where)) from exc
        except CorruptionError as exc:
            raise CorruptArchiveError(exc.reason, **_place(where)) from exc

    def _block_source(
        self, fd: int, area: int, table: list[Any], where: dict[Any, Any]
    ) -> Callable[..., Any]:
        size = os.fstat(fd).st_size  # blocks past the end are refused before mapping them

        def load_block(index: int, dtype: Any, shape: tuple[Any, ...], order: str) -> Any:
            import numpy

            offset, nbytes, check = table[index]
            start = area + offset
            if start + nbytes > size:
                raise CorruptArchiveError("array block truncated", **_place(where))
            if self.memmode is None:  # read straight into the array: one copy, writable
                array = numpy.empty(shape, dtype, order=order)  # type: ignore[call-overload]
                raw = memoryview(array.reshape(-1, order=order).view(numpy.uint8))
                if pread_into(fd, raw, start) != nbytes:
                    raise CorruptArchiveError("array block truncated", **_place(where))
            else:
                mode = MEMMAP_MODES[self.memmode]
                with open(fd, "rb", buffering=0, closefd=False) as handle:
                    array = numpy.memmap(handle, dtype, mode, start, shape, order)  # type: ignore[call-overload]
                raw = memoryview(array.reshape(-1, order=order).view(numpy.uint8))
            if raw.nbytes != nbytes or self._block_check(raw) != check:
                raise CorruptArchiveError("array block checksum mismatch", **_place(where))
            return array

        return load_block


def _place(where: dict[Any, Any]) -> dict[Any, Any]:
    return {"path": where.get("path"), "key": where.get("key")}


# --- pickling with raw blocks ---------------------------------------------------------------


def _dump_with_blocks(value: Any, blocks: list[Any], protocol: int, min_block: int) -> bytes:
    quick, slow, _ = _block_classes()
    found: list[memoryview] = []
    data = c_pickle(value, protocol, quick, blocks=found, min_block=min_block)
    if data is None:  # dill's territory (lambdas, __main__ objects...)
        found.clear()
        out = io.BytesIO()
        slow(out, protocol, blocks=found, min_block=min_block).dump(value)
        data = out.getvalue()
    blocks.extend(found)
    return data  # type: ignore[no-any-return]


def _load_with_blocks(data: bytes, load_block: Callable[..., Any]) -> Any:
    try:
        return _QuickBlockUnpickler(io.BytesIO(data), load_block).load()
    except CorruptionError:
        raise
    except Exception:  # what only dill's unpickler resolves (see _quickpickle)
        return _block_classes()[2](io.BytesIO(data), load_block).load()


class _BlockMixin:
    """Replaces contiguous numpy arrays by references to raw blocks kept beside the pickle."""

    def _start_blocks(self, blocks: list[memoryview], min_block: int) -> None:
        self._blocks = blocks
        self._min_block = min_block
        self._seen: dict[int, tuple[Any, ...]] = {}
        numpy = sys.modules.get("numpy")  # no numpy imported means no arrays to find
        self._ndarray = numpy.ndarray if numpy is not None else None

    def persistent_id(self, obj: Any) -> Any:
        if self._ndarray is None or type(obj) is not self._ndarray:
            return None
        order = _block_order(obj)
        if order is None or obj.nbytes < self._min_block:
            return None
        known = self._seen.get(id(obj))
        if known is None:  # an array referenced twice is stored once
            self._blocks.append(memoryview(obj.reshape(-1, order=order).view("u1")))
            known = (_BLOCK, len(self._blocks) - 1, obj.dtype, obj.shape, order)
            self._seen[id(obj)] = known
        return known


class _QuickBlockPickler(_BlockMixin, pickle.Pickler):
    def __init__(
        self, file: io.BytesIO, protocol: int, *, blocks: list[Any], min_block: int
    ) -> None:
        super().__init__(file, protocol)
        self._start_blocks(blocks, min_block)


class _QuickBlockUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, load_block: Callable[..., Any]) -> None:
        super().__init__(file)
        self._load_block = load_block

    def persistent_load(self, pid: Any) -> Any:
        return _block_reference(pid, self._load_block)


def _block_reference(pid: Any, load_block: Callable[..., Any]) -> Any:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == _BLOCK):
        raise pickle.UnpicklingError(f"unknown persistent reference {pid!r}")
    return load_block(*pid[1:])


@functools.cache
def _block_classes() -> tuple[type, type, type]:
    """The block picklers (C and dill) and unpickler; built on first use (dill loads lazily)."""
    import dill

    class DillBlockPickler(_BlockMixin, dill.Pickler):  # type: ignore[misc]
        def __init__(
            self, file: io.BytesIO, protocol: int, *, blocks: list[Any], min_block: int
        ) -> None:
            super().__init__(file, protocol=protocol)
            self._start_blocks(blocks, min_block)

    class BlockUnpickler(dill.Unpickler):  # type: ignore[misc]
        """Reads what the block picklers wrote, building arrays from their blocks."""

        def __init__(self, file: io.BytesIO, load_block: Callable[..., Any]) -> None:
            super().__init__(file)
            self._load_block = load_block

        def persistent_load(self, pid: Any) -> Any:
            return _block_reference(pid, self._load_block)

    return _QuickBlockPickler, DillBlockPickler, BlockUnpickler


def _block_order(array: Any) -> str | None:
    """'C' or 'F' for an array stored as a raw block; None keeps it inside the pickle."""
    if array.dtype.hasobject or array.ndim == 0 or array.nbytes == 0:
        return None
    if array.flags.c_contiguous:
        return "C"
    return "F" if array.flags.f_contiguous else None
