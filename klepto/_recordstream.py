"""Large records of a record file, written as a stream: compressed and written piece by
piece, never held whole in memory (a mixin of the record file's ``Writer``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from klepto import _recordformat as fmt
from klepto._fs import pwrite_all

STREAM_CHUNK = 1 << 20


class Streaming:
    """``append_stream`` for ``Writer``, which provides the state and methods used here."""

    fd: int
    buf_base: int
    framed: int
    count: int
    chain: int
    nblocks: int
    since_cp: int
    header: fmt.FileHeader
    codec: Any

    # Provided by Writer:
    def check_process(self) -> None:
        raise NotImplementedError

    def cut(self) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def _index_frame(self, first: int, offset: int) -> None:
        raise NotImplementedError

    def append_stream(self, chunks: Iterable[bytes | memoryview]) -> int:
        """Append one record made of ``chunks`` without holding it whole in memory."""
        self.check_process()
        self.cut()
        self.flush()
        try:
            return self._stream_frame(chunks)
        except BaseException:
            os.ftruncate(self.fd, self.buf_base)  # drop the partial frame
            raise

    def _stream_frame(self, chunks: Iterable[bytes | memoryview]) -> int:
        offset = self.buf_base
        body_start = offset + fmt.BLOCK_SIZE
        pieces = _rechunk(chunks)
        first_piece = next(pieces, b"")
        compressor = self._stream_compressor(first_piece)
        pos, crc = body_start, 0
        for piece in _prepend(first_piece, pieces):
            out = compressor.compress(piece) if compressor else piece
            if out:
                pwrite_all(self.fd, out, pos)
                crc = fmt.crc32(out, crc)
                pos += len(out)
        if compressor:
            out = compressor.flush()
            pwrite_all(self.fd, out, pos)
            crc = fmt.crc32(out, crc)
            pos += len(out)
        flags = fmt.F_COMPRESSED | fmt.F_STREAMED if compressor else 0
        head = fmt.encode_block(fmt.FRAME, flags, crc, pos - body_start, self.framed, 1)
        pwrite_all(self.fd, head, offset)
        self.chain = fmt.crc32(head, self.chain)
        self.nblocks += 1
        self.since_cp += fmt.BLOCK_WEIGHT
        self.buf_base = pos
        first = self.framed
        self.framed += 1
        self.count += 1
        self._index_frame(first, offset)
        return first

    def _stream_compressor(self, probe: bytes | memoryview) -> Any:
        """A compressor for a streamed record, or ``None`` when its start does not compress."""
        if not self.header.codec or not probe:
            return None
        probe = probe[:65536]
        trial = self.codec.stream_compressor()
        size = len(trial.compress(probe)) + len(trial.flush())
        if size > len(probe) - (len(probe) >> 4):
            return None
        return self.codec.stream_compressor()


def _rechunk(chunks: Iterable[bytes | memoryview]) -> Any:
    """Split or pass through ``chunks`` so that no piece exceeds ``STREAM_CHUNK`` bytes."""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        for start in range(0, len(view), STREAM_CHUNK):
            yield view[start : start + STREAM_CHUNK]


def _prepend(first: Any, rest: Any) -> Any:
    if len(first):
        yield first
    yield from rest
