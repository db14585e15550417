"""docs/formats.rst is the record file's real specification: a reader written here from the
document alone (no klepto imports besides the writer under test) reads klepto's files."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from klepto.records import RecordFile

MAGIC = b"\x89KRF\r\n\x1a\n"


class MinimalReader:
    """Follows docs/formats.rst, "Record file (version 1)", and nothing else."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        header = data[:64]
        assert header[:8] == MAGIC
        assert struct.unpack_from("<I", header, 60)[0] == zlib.crc32(header[:60])
        version, size, self.frame_size, self.codec, self.level, _flags, self.fanout = (
            struct.unpack_from("<HHIBbHI", header, 8)
        )
        assert (version, size) == (1, 64)
        self.file_id = header[28:44]
        self.slot = self.newest_slot()

    def newest_slot(self) -> tuple[int, int, int, int]:
        slots = []
        for offset in (2048, 3072):
            raw = self.data[offset : offset + 36]
            if struct.unpack_from("<I", raw, 32)[0] == zlib.crc32(raw[:32]):
                slots.append(struct.unpack_from("<QQQQ", raw))
        return max(slots)

    def block(self, offset: int) -> tuple[int, int, int, int, int, bytes]:
        head = self.data[offset : offset + 32]
        kind, flags, reserved, body_crc, body_len, a, b, head_crc = struct.unpack("<BBHIQQII", head)
        assert head_crc == zlib.crc32(head[:28]) and reserved == 0
        body = self.data[offset + 32 : offset + 32 + body_len]
        assert zlib.crc32(body) == body_crc
        return kind, flags, a, b, body_len, body

    def commit(self) -> dict:
        seq, offset, end, count = self.slot
        kind, _, a, _, length, body = self.block(offset)
        assert kind == 6 and a == seq and length == 80 and end == offset + 112
        fields = struct.unpack_from("<QQQQQQQII", body)
        assert body[64:80] == self.file_id and fields[0] == count
        names = [
            "count",
            "start",
            "prev",
            "checkpoint",
            "metadata",
            "dictionary",
            "time",
            "chain",
            "blocks",
        ]
        return dict(zip(names, fields))

    def records(self) -> list[bytes]:
        """Every record, by walking the blocks in order (the simplest correct reading)."""
        commit = self.commit()
        zdict = self.block(commit["dictionary"])[5] if commit["dictionary"] else None
        out: list[bytes] = []
        offset = 4096
        end = self.slot[1]
        while offset < end:
            kind, flags, a, b, length, body = self.block(offset)
            if kind == 1:
                assert a == len(out)
                out.extend(self.frame(flags, b, body, zdict))
            offset += 32 + length
        assert len(out) == commit["count"]
        return out

    def frame(self, flags: int, n: int, body: bytes, zdict: bytes | None) -> list[bytes]:
        payload = body
        if flags & 1:
            assert self.codec == 1  # zlib, the default
            if flags & 2:
                worker = zlib.decompressobj(zdict=zdict)
                payload = worker.decompress(body) + worker.flush()
            else:
                worker = zlib.decompressobj()
                payload = worker.decompress(body) + worker.flush()
        width = (flags >> 2) & 3
        if width == 0:
            assert n == 1
            return [payload]
        size = {1: 2, 2: 4}[width]
        lengths = struct.unpack_from(f"<{n}{'H' if size == 2 else 'I'}", payload)
        pos = n * size
        records = []
        for length in lengths:
            records.append(payload[pos : pos + length])
            pos += length
        assert pos == len(payload)
        return records

    def metadata(self) -> bytes | None:
        offset = self.commit()["metadata"]
        if not offset:
            return None
        kind, _, _, _, _, body = self.block(offset)
        assert kind == 4
        return body

    def record(self, r: int) -> bytes:
        """Record ``r`` through the index, as the document describes a lookup."""
        levels = self.index_at_commit()
        commit = self.commit()
        zdict = self.block(commit["dictionary"])[5] if commit["dictionary"] else None
        for height, entries in enumerate(levels):
            if entries and entries[0][0] <= r:
                first, offset = max(e for e in entries if e[0] <= r)
                for _ in range(height):
                    kind, _, _, _, _, body = self.block(offset)
                    assert kind == 2
                    n = len(body) // 16
                    page = list(
                        zip(
                            struct.unpack_from(f"<{n}Q", body),
                            struct.unpack_from(f"<{n}Q", body, 8 * n),
                        )
                    )
                    first, offset = max(e for e in page if e[0] <= r)
                kind, flags, a, b, _, body = self.block(offset)
                assert kind == 1 and a == first
                return self.frame(flags, b, body, zdict)[r - a]
        raise IndexError(r)

    def index_at_commit(self) -> list[list[tuple[int, int]]]:
        commit = self.commit()
        levels: list[list[tuple[int, int]]] = [[]]
        offset = 4096
        if commit["checkpoint"]:
            _, _, _, _, length, body = self.block(commit["checkpoint"])
            levels, pos = [], 1
            for _ in range(body[0]):
                (n,) = struct.unpack_from("<I", body, pos)
                firsts = struct.unpack_from(f"<{n}Q", body, pos + 4)
                offsets = struct.unpack_from(f"<{n}Q", body, pos + 4 + 8 * n)
                levels.append(list(zip(firsts, offsets)))
                pos += 4 + 16 * n
            offset = commit["checkpoint"] + 32 + length
        while offset < self.slot[1]:
            kind, _, a, b, length, _ = self.block(offset)
            if kind == 1:
                levels[0].append((a, offset))
            elif kind == 2:
                assert len(levels[b]) == self.fanout
                levels[b] = []
                if len(levels) == b + 1:
                    levels.append([])
                levels[b + 1].append((a, offset))
            offset += 32 + length
        return levels


def test_documented_example_layout(tmp_path):
    path = tmp_path / "tiny.krf"
    with RecordFile(str(path), "a", compression=None) as f:
        f.extend([b"hi", b"there"])
        f.commit()
    data = path.read_bytes()
    assert len(data) == 4251
    kind, flags, _, _, length, a, b, _ = struct.unpack_from("<BBHIQQII", data, 4096)
    assert (kind, flags, length, a, b) == (1, 0x04, 11, 0, 2)
    assert data[4128:4139] == b"\x02\x00\x05\x00hithere"
    assert struct.unpack_from("<BxxxIQQ", data, 4139)[0] == 6
    assert struct.unpack_from("<QQQQ", data, 3072) == (1, 4139, 4251, 2)
    reader = MinimalReader(data)
    assert reader.records() == [b"hi", b"there"] and reader.metadata() is None


@pytest.mark.parametrize("fanout", [256, 3])
def test_minimal_reader_reads_klepto_files(tmp_path, monkeypatch, fanout):
    from klepto import records

    monkeypatch.setattr(records, "DEFAULT_FANOUT", fanout)
    rnd = random.Random(7)
    data = [
        bytes(rnd.choices(b"log line words 0123456789", k=rnd.randrange(0, 400)))
        for _ in range(4000)
    ]
    data[100] = b"x" * 20_000  # a record of its own frame
    path = tmp_path / "log.krf"
    with RecordFile(str(path), "a", frame_size=1024) as f:
        for start in range(0, len(data), 97):
            f.extend(data[start : start + 97])
            if start % 3 == 0:
                f.set_metadata(b"cursor %d" % start)
            f.commit()
        f.extend([b"uncommitted"] * 10)  # not part of any commit: invisible
    raw = path.read_bytes()
    reader = MinimalReader(raw)
    assert reader.records() == data
    assert reader.metadata() == b"cursor %d" % (len(data) // 97 // 3 * 3 * 97)
    for r in (0, 1, 100, 101, 2048, 3999, *rnd.sample(range(4000), 50)):
        assert reader.record(r) == data[r]
