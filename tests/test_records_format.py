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
    """Follows docs/formats.rst, "Record file (version 2)", and nothing else."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        header = data[:64]
        assert header[:8] == MAGIC
        assert struct.unpack_from("<I", header, 60)[0] == zlib.crc32(header[:60])
        version, size, self.frame_size, self.codec, self.level, _flags, self.fanout = (
            struct.unpack_from("<HHIBbHI", header, 8)
        )
        assert version in (1, 2) and size == 64
        self.version = version
        self.file_id = header[28:44]
        self.seal = zlib.crc32(self.file_id)
        self.slot = self.newest_slot()
        self.end, self.count = self.last_commit()

    def newest_slot(self) -> tuple[int, int, int, int]:
        slots = []
        for offset in (2048, 3072):
            raw = self.data[offset : offset + 36]
            if struct.unpack_from("<I", raw, 32)[0] == zlib.crc32(raw[:32]):
                slots.append(struct.unpack_from("<QQQQ", raw))
        return max(slots)

    def sealed(self, offset: int) -> tuple[int, bytes] | None:
        """(record number, record) of a valid sealed record at ``offset``, else None."""
        head = self.data[offset : offset + 16]
        if self.version < 2 or len(head) < 16 or head[0] != 7 or head[1] != 0:
            return None
        length, number, crc = struct.unpack_from("<HQI", head, 2)
        record = self.data[offset + 16 : offset + 16 + length]
        if len(record) != length or crc != zlib.crc32(record, zlib.crc32(head[:12], self.seal)):
            return None
        return number, record

    def last_commit(self) -> tuple[int, int]:
        """(end, record count) of the last commit: the slot's, then the sealed records
        with the next numbers after it (the files here have every full commit's slot)."""
        _, _, end, count = self.slot
        while (found := self.sealed(end)) is not None and found[0] == count:
            end, count = end + 16 + len(found[1]), count + 1
        return end, count

    def block(self, offset: int) -> tuple[int, int, int, int, int, bytes]:
        found = self.sealed(offset)
        if found is not None:  # kind 7, a = its number, b = 1; 32 + length is its size
            return 7, 0, found[0], 1, 16 + len(found[1]) - 32, found[1]
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
        while offset < self.end:
            kind, flags, a, b, length, body = self.block(offset)
            if kind == 1:
                assert a == len(out)
                out.extend(self.frame(flags, b, body, zdict))
            elif kind == 7:
                assert a == len(out)
                out.append(body)
            offset += 32 + length
        assert offset == self.end and len(out) == self.count >= commit["count"]
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
                kind, flags, a, b, length, body = self.block(offset)
                assert kind in (1, 7) and a == first
                if kind == 1:
                    return self.frame(flags, b, body, zdict)[r - a]
                while a < r:  # a run of sealed records: read it forward
                    offset += 32 + length
                    kind, _, a, _, length, body = self.block(offset)
                    assert kind == 7
                return body
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
        run_mark = 0  # the run's last sealed record with an entry (0: no run)
        while offset < self.end:
            kind, _, a, b, length, _ = self.block(offset)
            if kind == 7:
                if not run_mark or offset - run_mark >= self.frame_size:
                    levels[0].append((a, offset))
                    run_mark = offset
            else:
                run_mark = 0
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
    with RecordFile(str(path), "a", compression=None) as f:
        f.append(b"!")
        f.commit()  # one small record on its own: a sealed record, 17 bytes, no slot write
    data = path.read_bytes()
    assert len(data) == 4251 + 17 and data[4251:4263] == bytes.fromhex("0700010002" + "00" * 7)
    seal = zlib.crc32(data[28:44])
    assert struct.unpack_from("<I", data, 4263)[0] == zlib.crc32(
        b"!", zlib.crc32(data[4251:4263], seal)
    )
    assert data[4267:] == b"!" and struct.unpack_from("<QQQQ", data, 3072) == (1, 4139, 4251, 2)
    assert MinimalReader(data).records() == [b"hi", b"there", b"!"]


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
        for i in range(2500):  # one record per commit: mostly sealed records, in runs
            data.append(b"%d " % i * rnd.choice((1, 1, 1, 30, 200)))
            f.commit_record(data[-1])
        f.extend([b"uncommitted"] * 10)  # not part of any commit: invisible
    raw = path.read_bytes()
    assert raw.count(b"\x07\x00") > 1500  # sealed records are there
    reader = MinimalReader(raw)
    assert reader.records() == data
    assert reader.metadata() == b"cursor %d" % (4000 // 97 // 3 * 3 * 97)
    for r in (0, 1, 100, 101, 2048, 3999, 4000, 6499, *rnd.sample(range(6500), 100)):
        assert reader.record(r) == data[r]
