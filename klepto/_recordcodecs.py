"""Frame codecs of the record file: ``none``, ``zlib`` (the default) and ``zstd``.

Each compresses one frame at a time, optionally with the file's preset dictionary (a
sample of its first records: small frames then compress nearly as well as large ones), and
decompresses large single-record frames as a stream. The id stored in the file header
selects the codec; see docs/formats.rst.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from klepto.errors import require


class _NoCodec:
    name = "none"

    def __init__(self, level: int, zdict: bytes | None) -> None:
        self.zdict = zdict

    def compress(self, data: bytes, use_dict: bool) -> bytes:
        return data

    def decompress(self, data: bytes | memoryview, use_dict: bool) -> bytes:
        return bytes(data)

    # Never called: raw frames are not streamed.
    def stream_compressor(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def stream_decompressor(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def stream_decompress(
        self, pieces: Iterator[bytes], chunk_size: int, use_dict: bool
    ) -> Iterator[bytes]:
        return pieces


class _ZlibCodec:
    """zlib frames; a preset dictionary (``zdict``) is primed once and copied per frame."""

    name = "zlib"

    def __init__(self, level: int, zdict: bytes | None) -> None:
        self.level = level
        self.zdict = zdict
        self._plain = zlib.compressobj(level)
        self._primed = (
            zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
            if zdict
            else None
        )

    def compress(self, data: bytes, use_dict: bool) -> bytes:
        worker = (self._primed if use_dict else self._plain).copy()  # type: ignore[union-attr]
        return worker.compress(data) + worker.flush()

    def decompress(self, data: bytes | memoryview, use_dict: bool) -> bytes:
        if not use_dict:
            return zlib.decompress(data)
        worker = zlib.decompressobj(15, self.zdict)  # type: ignore[arg-type]
        out = worker.decompress(data)
        if not worker.eof or worker.unused_data:
            raise zlib.error("incomplete or over-long compressed frame")
        return out

    def stream_compressor(self) -> Any:
        return zlib.compressobj(self.level)

    def stream_decompressor(self) -> Any:
        return zlib.decompressobj()

    def stream_decompress(
        self, pieces: Iterator[bytes], chunk_size: int, use_dict: bool
    ) -> Iterator[bytes]:
        """Decompress a body given in ``pieces``, yielding at most ``chunk_size`` at a time."""
        worker = zlib.decompressobj(15, self.zdict if use_dict and self.zdict else b"")
        for piece in pieces:
            pending = piece
            while pending:
                out = worker.decompress(pending, chunk_size)
                pending = worker.unconsumed_tail
                if out:
                    yield out
        tail = worker.flush()
        if tail:
            yield tail
        if not worker.eof or worker.unused_data:
            raise zlib.error("incomplete or over-long compressed frame")


class _ZstdCodec:
    """Zstandard frames (``pip install 'klepto[zstd]'``), with a raw-content dictionary."""

    name = "zstd"

    def __init__(self, level: int, zdict: bytes | None) -> None:
        zstd = require("zstandard", "zstd", "zstd compression of record files")
        self.zdict = zdict
        self._zstd = zstd
        self.level = level
        self._plain_c = zstd.ZstdCompressor(level=level)
        self._plain_d = zstd.ZstdDecompressor()
        if zdict:
            prepared = zstd.ZstdCompressionDict(zdict, dict_type=zstd.DICT_TYPE_RAWCONTENT)
            self._dict_c = zstd.ZstdCompressor(level=level, dict_data=prepared)
            self._dict_d = zstd.ZstdDecompressor(dict_data=prepared)

    def compress(self, data: bytes, use_dict: bool) -> bytes:
        return (self._dict_c if use_dict else self._plain_c).compress(data)  # type: ignore[no-any-return]

    def decompress(self, data: bytes | memoryview, use_dict: bool) -> bytes:
        try:
            return (self._dict_d if use_dict else self._plain_d).decompress(data)  # type: ignore[no-any-return]
        except self._zstd.ZstdError as exc:
            raise ValueError(str(exc)) from None

    def stream_compressor(self) -> Any:
        return self._plain_c.compressobj()

    def stream_decompressor(self) -> Any:
        return self._plain_d.decompressobj()

    def stream_decompress(
        self, pieces: Iterator[bytes], chunk_size: int, use_dict: bool
    ) -> Iterator[bytes]:
        """Decompress a body given in ``pieces``, yielding at most ``chunk_size`` at a time."""
        decompressor = self._dict_d if use_dict else self._plain_d
        try:
            with decompressor.stream_reader(_PieceReader(pieces)) as reader:
                while out := reader.read(chunk_size):
                    yield out
        except self._zstd.ZstdError as exc:
            raise ValueError(str(exc)) from None


class _PieceReader:
    """A minimal readable file over an iterator of byte strings (for zstd's stream_reader)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._rest = piece
        if size < 0 or size >= len(self._rest):
            out, self._rest = self._rest, b""
        else:
            out, self._rest = self._rest[:size], self._rest[size:]
        return out


CODECS = {0: _NoCodec, 1: _ZlibCodec, 2: _ZstdCodec}
CODEC_NAMES = {0: "none", 1: "zlib", 2: "zstd"}
CODEC_IDS = {name: ident for ident, name in CODEC_NAMES.items()}
DEFAULT_LEVELS = {0: 0, 1: 5, 2: 3}


def codec_id(name: str | None) -> int:
    key = "none" if name is None else name
    try:
        return CODEC_IDS[key]
    except KeyError:
        known = ", ".join(sorted(CODEC_IDS))
        raise ValueError(f"unknown record-file compression {name!r} (known: {known})") from None


def make_codec(header: Any, zdict: bytes | None) -> Any:
    """The codec of a file ``header`` (its ``codec`` id and ``level``), with ``zdict``."""
    return CODECS[header.codec](header.level, zdict)
