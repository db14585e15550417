"""The record file's on-disk format: header, commit pointers, blocks, frame codecs.

Everything here is pure encoding and decoding of bytes (no file handles); docs/formats.rst
is the normative description, and the constants below are named as they are there. All
integers are little-endian.

Layout::

    0      file header (64 bytes, CRC-protected)
    2048   commit pointer slot A   } advisory, rewritten in place after every commit;
    3072   commit pointer slot B   } slot = seq % 2, so a torn write leaves the other
    4096   blocks: [32-byte block header][body] ...  (append-only)

A block header carries the kind, flags, body length (u64), CRCs of the body and of the
header itself, and two kind-specific fields. A commit is a run of blocks closed by a
COMMIT block whose CRC chain covers the headers (and so the body CRCs) of every block in
the run; a commit without a valid COMMIT block does not exist. Version 2 adds the sealed
record (:mod:`klepto._recordseal`): a commit of one small record in one block with a
16-byte header.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from array import array
from dataclasses import dataclass, field
from itertools import accumulate
from typing import NamedTuple

from klepto import _crc, _recordcodecs, _recordseal
from klepto.errors import CorruptRecordError

MAGIC = b"\x89KRF\r\n\x1a\n"
VERSION = 2  # what new files are written as
READABLE = (1, 2)  # version 1 files have no sealed records; writers keep them version 1
HEADER_SIZE = 64
SLOT_OFFSETS = (2048, 3072)
DATA_START = 4096

# Block kinds.
FRAME = 1
INDEX = 2
CHECKPOINT = 3
META = 4
DICT = 5
COMMIT = 6
SEALED = _recordseal.SEALED  # 7, version 2 only: a commit of one record, 16-byte header
SEALED_HEAD = _recordseal.HEAD_SIZE
# What a block adds to the count that decides when the writer saves an index checkpoint (the
# walk on open); a sealed record, small and common, counts a quarter of another block.
BLOCK_WEIGHT = 4
SEALED_WEIGHT = 1
KIND_NAMES = {
    FRAME: "frame",
    INDEX: "index",
    CHECKPOINT: "checkpoint",
    META: "metadata",
    DICT: "dictionary",
    COMMIT: "commit",
    SEALED: "sealed record",
}

# Frame flags.
F_COMPRESSED = 0x01
F_DICT = 0x02
F_WIDTH_SHIFT = 2  # 2 bits: 0 = one record (no length table), 1 = u16, 2 = u32 lengths
F_STREAMED = 0x10  # compressed as a stream (large record): decompress incrementally
WIDTH_CODES = {0: 0, 1: 2, 2: 4}

_HEADER = struct.Struct("<8sHHIBbHII16sQ8sI")
_SLOT = struct.Struct("<QQQQI")
BLOCK = struct.Struct("<BBHIQQII")
BLOCK_SIZE = BLOCK.size  # 32
_COMMIT = struct.Struct("<QQQQQQQII16s")
COMMIT_BODY_SIZE = _COMMIT.size  # 80
COMMIT_BLOCK_SIZE = BLOCK_SIZE + COMMIT_BODY_SIZE
_U32 = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"
crc32 = _crc.crc32  # every record module checks through fmt.crc32


# The codecs live in their own module; the file format names them by these ids.
CODEC_NAMES = _recordcodecs.CODEC_NAMES
CODEC_IDS = _recordcodecs.CODEC_IDS
DEFAULT_LEVELS = _recordcodecs.DEFAULT_LEVELS
codec_id = _recordcodecs.codec_id
make_codec = _recordcodecs.make_codec


@dataclass(frozen=True)
class FileHeader:
    """The immutable parameters of one record file, fixed when it is created."""

    frame_size: int
    codec: int
    level: int
    flags: int
    fanout: int
    dictionary_size: int
    file_id: bytes
    created_ns: int
    version: int = VERSION
    seal: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The CRC seed of this file's sealed records, needed on every one of them.
        object.__setattr__(self, "seal", _recordseal.seal_of(self.file_id))

    @property
    def sealing(self) -> bool:
        """Whether this file may hold sealed records (format version 2 and later)."""
        return self.version >= 2

    def encode(self) -> bytes:
        fields = _HEADER.pack(
            MAGIC,
            self.version,
            HEADER_SIZE,
            self.frame_size,
            self.codec,
            self.level,
            self.flags,
            self.fanout,
            self.dictionary_size,
            self.file_id,
            self.created_ns,
            bytes(8),
            0,
        )
        body = fields[:-4]
        return body + _U32.pack(crc32(body))

    @classmethod
    def new(
        cls, *, frame_size: int, codec: int, level: int, fanout: int, dictionary_size: int
    ) -> FileHeader:
        return cls(
            frame_size, codec, level, 0, fanout, dictionary_size, os.urandom(16), time.time_ns()
        )


class NotARecordFile(ValueError):
    """Raised by :func:`decode_header` with the reason; the caller adds the path."""


def decode_header(data: bytes) -> FileHeader:
    if len(data) < HEADER_SIZE:
        raise NotARecordFile(f"file too short for a record-file header ({len(data)} bytes)")
    (
        magic,
        version,
        size,
        frame_size,
        codec,
        level,
        flags,
        fanout,
        dsize,
        file_id,
        created,
        _reserved,
        crc,
    ) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise NotARecordFile("not a klepto record file (bad magic)")
    if crc32(data[: HEADER_SIZE - 4]) != crc:
        raise NotARecordFile("record-file header checksum mismatch")
    if version not in READABLE:
        raise NotARecordFile(
            f"unsupported record-file format version {version} "
            f"(this klepto reads versions {', '.join(map(str, READABLE))})"
        )
    if size != HEADER_SIZE or fanout < 2 or frame_size < 1 or codec not in CODEC_NAMES:
        raise NotARecordFile("record-file header holds impossible values")
    return FileHeader(frame_size, codec, level, flags, fanout, dsize, file_id, created, version)


# --- commit pointer slots ------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """An advisory pointer to a full commit: where it is, where it ends, how many records."""

    seq: int
    commit_offset: int
    commit_end: int
    record_count: int

    def encode(self) -> bytes:
        body = _SLOT.pack(self.seq, self.commit_offset, self.commit_end, self.record_count, 0)
        return body[:-4] + _U32.pack(crc32(body[:-4]))


EMPTY_SLOT = Slot(0, 0, DATA_START, 0)


def decode_slot(data: bytes) -> Slot | None:
    """The slot in ``data``, or ``None`` when it is torn, damaged or never written."""
    if len(data) < _SLOT.size:
        return None
    seq, offset, end, count, crc = _SLOT.unpack_from(data)
    if crc32(data[: _SLOT.size - 4]) != crc:
        return None
    if seq == 0:
        return EMPTY_SLOT if (offset, end, count) == (0, DATA_START, 0) else None
    if offset < DATA_START or end != offset + COMMIT_BLOCK_SIZE:
        return None
    return Slot(seq, offset, end, count)


# --- blocks --------------------------------------------------------------------------------


class Block(NamedTuple):
    """A decoded block header at ``offset``; the body is ``[body_start, end)``.

    (A named tuple: walks make one per block, and it is several times cheaper to build
    than a frozen dataclass.)"""

    offset: int
    kind: int
    flags: int
    body_crc: int
    body_len: int
    a: int
    b: int
    raw: bytes  # the 32 header bytes, which the commit chain covers

    @property
    def head_size(self) -> int:
        return SEALED_HEAD if self.kind == SEALED else BLOCK_SIZE

    @property
    def body_start(self) -> int:
        return self.offset + self.head_size

    @property
    def end(self) -> int:
        return self.offset + self.head_size + self.body_len


def encode_block(kind: int, flags: int, body_crc: int, body_len: int, a: int, b: int) -> bytes:
    head = BLOCK.pack(kind, flags, 0, body_crc, body_len, a, b, 0)[:-4]
    return head + _U32.pack(crc32(head))


def decode_block(data: bytes | memoryview, pos: int, offset: int) -> Block | None:
    """The 32-byte block header at ``data[pos:]`` (file offset ``offset``), or ``None`` if
    invalid. Sealed records have headers of their own: see :func:`decode_sealed`."""
    raw = bytes(data[pos : pos + BLOCK_SIZE])
    kind, flags, reserved, body_crc, body_len, a, b, crc = BLOCK.unpack(raw)
    if crc32(raw[:28]) != crc or reserved or kind not in KIND_NAMES or kind == SEALED:
        return None
    return Block(offset, kind, flags, body_crc, body_len, a, b, raw)


def decode_sealed(data: bytes | memoryview, pos: int, offset: int, seal: int) -> Block | None:
    """The whole, intact sealed record at ``data[pos:]`` as a block (``a``: its record
    number, ``b``: 1), or ``None``; ``data`` must hold all of it."""
    found = _recordseal.unseal(data, pos, seal)
    if found is None:
        return None
    number, start, end = found
    raw = bytes(data[pos : pos + SEALED_HEAD])
    crc = _recordseal.CRC.unpack_from(raw, 12)[0]
    return Block(offset, SEALED, 0, crc, end - start, number, 1, raw)


# --- commit records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """The body of a COMMIT block: the state of the file once this commit is applied.

    ``prev_commit`` is the previous commit's block: a COMMIT block or a sealed record."""

    seq: int
    offset: int
    record_count: int
    start: int
    prev_commit: int
    checkpoint: int
    metadata: int
    dictionary: int
    timestamp_ns: int
    chain_crc: int
    n_blocks: int

    @property
    def end(self) -> int:
        return self.offset + COMMIT_BLOCK_SIZE


def encode_commit(c: Commit, file_id: bytes) -> bytes:
    body = _COMMIT.pack(
        c.record_count,
        c.start,
        c.prev_commit,
        c.checkpoint,
        c.metadata,
        c.dictionary,
        c.timestamp_ns,
        c.chain_crc,
        c.n_blocks,
        file_id,
    )
    return encode_block(COMMIT, 0, crc32(body), len(body), c.seq, 0) + body


def decode_commit(block: Block, body: bytes, file_id: bytes) -> Commit | None:
    """The commit in ``block``/``body``, or ``None`` when it fails any check."""
    if (
        block.kind != COMMIT
        or block.body_len != COMMIT_BODY_SIZE
        or len(body) != COMMIT_BODY_SIZE
        or crc32(body) != block.body_crc
        or block.a < 1
    ):
        return None
    count, start, prev, checkpoint, meta, dic, ts, chain, nblocks, fid = _COMMIT.unpack(body)
    if fid != file_id or start < DATA_START or start > block.offset:
        return None
    return Commit(
        block.a, block.offset, count, start, prev, checkpoint, meta, dic, ts, chain, nblocks
    )


# --- index pages and checkpoints -----------------------------------------------------------


def pack_u64s(values: list[int]) -> bytes:
    packed = array("Q", values)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def unpack_u64s(data: bytes | memoryview) -> list[int]:
    values = array("Q")
    values.frombytes(data)
    if not _LITTLE:
        values.byteswap()
    return values.tolist()


def encode_page(firsts: list[int], offsets: list[int]) -> bytes:
    return pack_u64s(firsts) + pack_u64s(offsets)


def decode_page(body: bytes) -> tuple[list[int], list[int]]:
    half = len(body) // 2
    if len(body) % 16 or not body:
        raise ValueError("index page size is not a whole number of entries")
    return unpack_u64s(body[:half]), unpack_u64s(body[half:])


def encode_checkpoint(levels: list[tuple[list[int], list[int]]]) -> bytes:
    parts = [bytes([len(levels)])]
    for firsts, offsets in levels:
        parts.append(_U32.pack(len(firsts)))
        parts.append(encode_page(firsts, offsets) if firsts else b"")
    return b"".join(parts)


def decode_checkpoint(body: bytes) -> list[tuple[list[int], list[int]]]:
    if not body:
        raise ValueError("empty checkpoint")
    levels = []
    pos = 1
    for _ in range(body[0]):
        (count,) = _U32.unpack_from(body, pos)
        pos += 4
        size = 8 * count
        firsts = unpack_u64s(body[pos : pos + size])
        offsets = unpack_u64s(body[pos + size : pos + 2 * size])
        if len(firsts) != count or len(offsets) != count:
            raise ValueError("checkpoint truncated")
        levels.append((firsts, offsets))
        pos += 2 * size
    if pos != len(body):
        raise ValueError("checkpoint has trailing bytes")
    return levels


# --- frame payloads ------------------------------------------------------------------------


def frame_payload(records: list[bytes]) -> tuple[bytes, int]:
    """The uncompressed payload of a frame of ``records`` and its length-table width code."""
    if len(records) == 1:
        return records[0], 0
    lengths = [len(r) for r in records]
    code, fmt = (1, "H") if max(lengths) < 0x10000 else (2, "I")
    table = struct.pack(f"<{len(records)}{fmt}", *lengths)
    return b"".join([table, *records]), code


def frame_ends(payload: bytes, n: int, code: int) -> tuple[int, list[int]]:
    """``(start, ends)``: record k of a frame payload is ``payload[ends[k-1] or start:ends[k]]``."""
    if code == 0:
        return 0, [len(payload)]
    width = WIDTH_CODES[code]
    start = n * width
    lengths = struct.unpack_from(f"<{n}{'H' if width == 2 else 'I'}", payload)
    ends = list(accumulate(lengths, initial=start))
    del ends[0]
    if ends[-1] != len(payload):
        raise ValueError("frame length table does not match its payload")
    return start, ends


def corrupt(reason: str, path: object, offset: int | None) -> CorruptRecordError:
    return CorruptRecordError(reason, path=path, offset=offset)
