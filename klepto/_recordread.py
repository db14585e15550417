"""The read side of a record file: frames, index pages and metadata, checked and cached.

Everything is read with positional reads (``os.pread``) through a ``read(offset, size)``
function, so one reader object can serve many threads: there is no shared file position,
and the small caches are guarded by a lock. Every frame is CRC-checked before it is
decompressed; damage raises :class:`CorruptRecordError` with the file and offset. Where
the index points at a sealed record, the run of sealed records from there plays the part
of the frame (:class:`klepto._recordseal.RunFrame`).
"""

from __future__ import annotations

import codecs
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from klepto import _recordformat as fmt
from klepto._recordindex import FrameIndex
from klepto._recordseal import RunFrame, read_run

Read = Callable[[int, int], bytes]
_CACHE_FRAMES = 32
_CACHE_PAGES = 64
_CACHE_LIMIT = 1 << 20  # frames larger than this are not kept
_READ_SLACK = 512
_SEALED = bytes([fmt.SEALED])


class Frame:
    """A decoded frame: record ``k`` is ``payload[ends[k - 1]:ends[k]]`` (``start`` for -1)."""

    __slots__ = ("ends", "first", "payload", "start")

    def __init__(self, first: int, payload: bytes, start: int, ends: list[int]) -> None:
        self.first = first
        self.payload = payload
        self.start = start
        self.ends = ends

    def __len__(self) -> int:
        return len(self.ends)

    def record(self, k: int) -> bytes:
        begin = self.ends[k - 1] if k else self.start
        return self.payload[begin : self.ends[k]]

    def records(self, k0: int, k1: int, encoding: str | None) -> list[Any]:
        """Records ``k0 .. k1 - 1``, decoded with ``encoding`` unless it is ``None``."""
        ends = self.ends
        begin = ends[k0 - 1] if k0 else self.start
        starts = [begin, *ends[k0 : k1 - 1]]
        payload = self.payload
        if encoding is None:
            return [payload[a:b] for a, b in zip(starts, ends[k0:k1])]
        if _is_utf8(encoding) and payload[begin : ends[k1 - 1]].isascii():
            # ASCII records are UTF-8 with one byte per character: decode the payload once
            # (latin-1 maps every byte, the length table too) and slice at the byte offsets.
            text = payload.decode("latin-1")
            return [text[a:b] for a, b in zip(starts, ends[k0:k1])]
        return [payload[a:b].decode(encoding) for a, b in zip(starts, ends[k0:k1])]


_UTF8_NAMES: dict[str, bool] = {}


def _is_utf8(encoding: str) -> bool:
    known = _UTF8_NAMES.get(encoding)
    if known is None:
        known = _UTF8_NAMES[encoding] = codecs.lookup(encoding).name == "utf-8"
    return known


class FrameReader:
    """Loads, checks, decodes and caches frames, index pages and metadata of one file."""

    def __init__(self, path: object, header: fmt.FileHeader, read: Read) -> None:
        self.path = path
        self.header = header
        self.read = read
        self._frames: dict[int, Frame] = {}
        self._pages: dict[int, tuple[list[int], list[int]]] = {}
        self._codecs: dict[int, Any] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._pages.clear()
            self._codecs.clear()

    # --- blocks ---------------------------------------------------------------------------
    def block(self, offset: int, kind: int, guess: int = 0) -> tuple[fmt.Block, bytes]:
        """The block at ``offset`` (which must be of ``kind``) and its CRC-checked body."""
        return self._checked(offset, kind, self.read(offset, fmt.BLOCK_SIZE + guess))

    def _checked(self, offset: int, kind: int, data: bytes) -> tuple[fmt.Block, bytes]:
        """The block of ``kind`` at ``offset`` whose first bytes are ``data``, and its body."""
        block = fmt.decode_block(data, 0, offset) if len(data) >= fmt.BLOCK_SIZE else None
        if block is None or block.kind != kind:
            name = fmt.KIND_NAMES[kind]
            raise fmt.corrupt(f"damaged {name} block header", self.path, offset)
        if block.body_len <= len(data) - fmt.BLOCK_SIZE:
            body = data[fmt.BLOCK_SIZE : fmt.BLOCK_SIZE + block.body_len]
        else:  # one read of the whole body: a large record is allocated and copied once
            body = self.read(block.body_start, block.body_len)
        if len(body) != block.body_len or fmt.crc32(body) != block.body_crc:
            name = fmt.KIND_NAMES[kind]
            raise fmt.corrupt(f"{name} block checksum mismatch", self.path, offset)
        return block, body

    def page(self, offset: int, level: int) -> tuple[list[int], list[int]]:
        cached = self._pages.get(offset)
        if cached is not None:
            return cached
        block, body = self.block(offset, fmt.INDEX, 16 * self.header.fanout)
        if block.b != level:
            raise fmt.corrupt("index page at the wrong level", self.path, offset)
        try:
            page = fmt.decode_page(body)
        except ValueError as exc:
            raise fmt.corrupt(f"damaged index page ({exc})", self.path, offset) from None
        self._remember(self._pages, offset, page, _CACHE_PAGES)
        return page

    def metadata(self, offset: int) -> bytes | None:
        if not offset:
            return None
        return self.block(offset, fmt.META)[1]

    # --- frames ---------------------------------------------------------------------------
    def frame(self, offset: int, dictionary: int, need: int = -1) -> Frame | RunFrame:
        """The frame at ``offset``, or the run of sealed records there (holding at least
        record ``need``: a run read earlier may have grown since)."""
        cached = self._frames.get(offset)
        if cached is not None and need < cached.first + len(cached):
            return cached
        span = self.header.frame_size + _READ_SLACK
        data = self.read(offset, fmt.BLOCK_SIZE + span)
        frame: Frame | RunFrame
        if data[:1] == _SEALED and self.header.sealing:
            frame = read_run(self.read, offset, self.header.seal, span, need, self.path, data)
        else:
            block, body = self._checked(offset, fmt.FRAME, data)
            frame = self.decode(block, body, dictionary)
        if len(frame.payload) <= _CACHE_LIMIT:
            self._remember(self._frames, offset, frame, _CACHE_FRAMES)
        return frame

    def decode(self, block: fmt.Block, body: bytes, dictionary: int) -> Frame:
        flags = block.flags
        code = (flags >> fmt.F_WIDTH_SHIFT) & 3
        try:
            payload = self._payload(flags, body, dictionary)
            if (code == 0) != (block.b == 1) or code not in fmt.WIDTH_CODES:
                raise ValueError("record count does not match the frame layout")
            start, ends = fmt.frame_ends(payload, block.b, code)
        except (ValueError, zlib.error, struct.error) as exc:
            raise fmt.corrupt(f"undecodable frame ({exc})", self.path, block.offset) from None
        return Frame(block.a, payload, start, ends)

    def stream(self, offset: int, dictionary: int, chunk_size: int) -> Iterator[bytes] | None:
        """The record of the single-record frame at ``offset`` in chunks (``None``: not one).

        The body's CRC is checked first, in a pass that holds one chunk at a time, so no
        unverified byte is ever returned; then it is read again and decompressed in pieces.
        """
        head = self.read(offset, fmt.BLOCK_SIZE)
        if head[:1] == _SEALED and self.header.sealing:
            return None  # a small record (a sealed record holds at most 64 KiB)
        block = fmt.decode_block(head, 0, offset) if len(head) == fmt.BLOCK_SIZE else None
        if block is None or block.kind != fmt.FRAME:
            raise fmt.corrupt("damaged frame block header", self.path, offset)
        if block.b != 1 or block.body_len <= _CACHE_LIMIT:
            return None
        crc = 0
        for piece in self._body_pieces(block, chunk_size):
            crc = fmt.crc32(piece, crc)
        if crc != block.body_crc:
            raise fmt.corrupt("frame block checksum mismatch", self.path, offset)
        return self._unpacked_pieces(block, dictionary, chunk_size)

    def _body_pieces(self, block: fmt.Block, chunk_size: int) -> Iterator[bytes]:
        pos = block.body_start
        while pos < block.end:
            piece = self.read(pos, min(chunk_size, block.end - pos))
            if not piece:
                raise fmt.corrupt("frame block truncated", self.path, block.offset)
            pos += len(piece)
            yield piece

    def _unpacked_pieces(
        self, block: fmt.Block, dictionary: int, chunk_size: int
    ) -> Iterator[bytes]:
        pieces = self._body_pieces(block, chunk_size)
        if not block.flags & fmt.F_COMPRESSED:
            yield from pieces
            return
        use_dict = bool(block.flags & fmt.F_DICT)
        codec = self.codec(dictionary if use_dict else 0)
        try:
            yield from codec.stream_decompress(pieces, chunk_size, use_dict)
        except (ValueError, zlib.error) as exc:
            raise fmt.corrupt(f"undecodable frame ({exc})", self.path, block.offset) from None

    def _payload(self, flags: int, body: bytes, dictionary: int) -> bytes:
        if not flags & fmt.F_COMPRESSED:
            return body
        use_dict = bool(flags & fmt.F_DICT)
        if use_dict and not dictionary:
            raise ValueError("frame needs a dictionary the file does not have")
        codec = self.codec(dictionary if use_dict else 0)
        if flags & fmt.F_STREAMED:
            worker = codec.stream_decompressor()
            return worker.decompress(body) + worker.flush()  # type: ignore[no-any-return]
        return codec.decompress(body, use_dict)  # type: ignore[no-any-return]

    def codec(self, dictionary: int) -> Any:
        codec = self._codecs.get(dictionary)
        if codec is None:
            zdict = self.block(dictionary, fmt.DICT)[1] if dictionary else None
            codec = fmt.make_codec(self.header, zdict)
            with self._lock:
                self._codecs[dictionary] = codec
        return codec

    def _remember(self, cache: dict[Any, Any], key: int, value: Any, capacity: int) -> None:
        with self._lock:
            if len(cache) >= capacity:
                # FIFO eviction: cheap, and with positional reads a miss costs one pread
                cache.pop(next(iter(cache)), None)
            cache[key] = value

    # --- records --------------------------------------------------------------------------
    def find(self, index: FrameIndex, record: int) -> tuple[int, int]:
        try:
            return index.find(record, self.page)
        except (LookupError, ValueError) as exc:
            raise fmt.corrupt(
                f"record {record} is not in the index ({exc})", self.path, None
            ) from None

    def record(self, index: FrameIndex, dictionary: int, record: int) -> bytes:
        first, offset = self.find(index, record)
        frame = self.frame(offset, dictionary, record)
        k = record - first
        if not 0 <= k < len(frame) or frame.first != first:
            raise fmt.corrupt(f"frame does not hold record {record}", self.path, offset)
        return frame.record(k)

    def records(
        self, index: FrameIndex, dictionary: int, start: int, stop: int, encoding: str | None
    ) -> Iterator[Any]:
        """Records ``start .. stop - 1`` in order, a frame at a time."""
        i = start
        while i < stop:
            first, offset = self.find(index, i)
            frame = self.frame(offset, dictionary, i)
            k0 = i - first
            k1 = min(len(frame), stop - first)
            if k0 >= k1 or frame.first != first:
                raise fmt.corrupt(f"frame does not hold record {i}", self.path, offset)
            yield from frame.records(k0, k1, encoding)
            i = first + k1
