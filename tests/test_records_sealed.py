"""Sealed records: a commit of one small record written as one block (record files, format
version 2), and everything that reads, recovers, verifies or follows them."""

from __future__ import annotations

import logging
import os
import random
import struct
import threading
import zlib
from pathlib import Path

import pytest

from klepto import _fs, _recordwriter, records
from klepto._recordshare import SharedRecordFile
from klepto.errors import CorruptRecordError, LockedError
from klepto.records import RecordFile

SEALED = 7


def raw(path) -> bytes:
    return Path(path).read_bytes()


def put(path, data: bytes | bytearray) -> None:
    Path(path).write_bytes(bytes(data))


def as_version_1(path) -> None:
    data = bytearray(raw(path))
    data[8:10] = struct.pack("<H", 1)
    data[60:64] = struct.pack("<I", zlib.crc32(bytes(data[:60])))
    put(path, data)


def kinds(path) -> list[int]:
    """The kind of every block of the file, in order (a walk by the documented layout)."""
    data = raw(path)
    out, pos = [], 4096
    while pos < len(data):
        out.append(data[pos])
        if data[pos] == SEALED:
            pos += 16 + struct.unpack_from("<H", data, pos + 2)[0]
        else:
            pos += 32 + struct.unpack_from("<Q", data, pos + 8)[0]
    return out


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "log.krf")


def test_a_commit_of_one_small_record_is_one_sealed_record(path):
    with RecordFile(path, "a") as f:
        f.extend([b"a", b"b"])
        f.commit()
        size, slots = os.path.getsize(path), raw(path)[2048:4096]
        assert f.commit_record(b"c") == 2
        f.append(b"d")
        assert f.commit() is True
        assert os.path.getsize(path) == size + 2 * 17  # two 16-byte headers, 1-byte records
        assert raw(path)[2048:4096] == slots  # no commit pointer written
        assert (f.commit_seq, f.committed_count, len(f)) == (3, 4, 4)
    assert kinds(path)[-2:] == [SEALED, SEALED]
    with RecordFile(path) as reader:
        assert list(reader) == [b"a", b"b", b"c", b"d"] and reader.commit_seq == 3
        assert reader.verify().ok and reader.verify().commits == 3


def test_commit_record_with_pending_records_commits_them_all(path):
    with RecordFile(path, "a") as f:
        f.append(b"first")
        assert f.commit_record(b"second") == 1  # one full commit of both
        f.set_metadata(b"m")
        f.commit_record(b"third")  # metadata changes: a full commit
    assert kinds(path).count(SEALED) == 0
    with RecordFile(path) as reader:
        assert list(reader) == [b"first", b"second", b"third"] and reader.get_metadata() == b"m"


@pytest.mark.parametrize(
    ("options", "record", "sealed"),
    [
        ({}, b"x" * 255, True),
        ({}, b"x" * 256, False),  # would be compressed: a frame
        ({"compression": None}, b"x" * 6143, True),
        ({"compression": None}, b"x" * 6144, False),  # a frame of its own (frame size)
        ({"compression": None, "frame_size": 1 << 20}, b"x" * 65535, True),
        ({"compression": None, "frame_size": 1 << 20}, b"x" * 65536, False),
    ],
)
def test_which_records_are_sealed(path, options, record, sealed):
    with RecordFile(path, "a", **options) as f:
        f.commit_record(record)
        assert f[0] == record
    assert (kinds(path) == [SEALED]) is sealed
    with RecordFile(path) as reader:
        assert reader[0] == record and reader.verify().ok


def test_sealed_commits_false_writes_full_commits(path):
    with RecordFile(path, "a", sealed_commits=False) as f:
        for i in range(10):
            f.commit_record(b"%d" % i)
        with f.rewrite() as fresh:  # the replacement writes as its original does
            fresh.append(b"only")
    assert SEALED not in kinds(path)


@pytest.mark.parametrize("fanout", [256, 3])
def test_many_sealed_records_random_access_and_reopen(path, monkeypatch, fanout):
    """Runs of sealed records in the index (a tiny fanout: pages, a deep tree), full commits
    forced by the bounds, reopening in between: every record reads back."""
    monkeypatch.setattr(records, "DEFAULT_FANOUT", fanout)
    rnd = random.Random(fanout)
    data = [bytes([65 + i % 26]) * rnd.choice((1, 7, 90, 200, 1000)) for i in range(3000)]
    with RecordFile(path, "a", frame_size=512) as f:
        for record in data[:1500]:
            f.commit_record(record)
        assert f[:] == data[:1500]
    with RecordFile(path, "a") as f:
        for record in data[1500:]:
            f.append(record)
            f.commit()
    blocks = kinds(path)
    assert blocks.count(SEALED) > 1500 and blocks.count(6) > 10  # forced full commits too
    with RecordFile(path) as reader:
        assert list(reader) == data and reader.verify().ok
        order = list(range(len(data)))
        rnd.shuffle(order)
        assert all(reader[i] == data[i] for i in order[:800])
        assert list(reader.records(1234, 1240)) == data[1234:1240]
        assert reader[-1] == data[-1] and reader.commit_seq == len(data)


def test_bounds_force_full_commits(path, monkeypatch):
    """Sealed records never run past SEAL_SPAN bytes of the last full commit, nor past
    CHECKPOINT_EVERY blocks of the last checkpoint: opening walks a bounded tail."""
    monkeypatch.setattr(_recordwriter, "SEAL_SPAN", 4096)
    with RecordFile(path, "a", compression=None) as f:
        for i in range(400):
            f.commit_record(b"%04d" % i * 50)  # 216 bytes each: 4096 / 216 = 19 per run
    blocks = kinds(path)
    run = longest = 0
    for kind in blocks:
        run = run + 1 if kind == SEALED else 0
        longest = max(longest, run)
    assert 15 <= longest <= 20
    monkeypatch.undo()
    with RecordFile(path, "a") as f:
        for i in range(600):
            f.commit_record(b"%d" % i)
    longest = run = 0
    for kind in kinds(path):
        run = run + 1 if kind == SEALED else 0
        longest = max(longest, run)
    assert longest <= _recordwriter.CHECKPOINT_EVERY


def test_open_after_sealed_records_reads_a_bounded_amount(tmp_path, monkeypatch):
    """Bytes asked for (64 KiB windows) to open a file of sealed records and read one."""
    real = _fs._pread_once
    read: list[int] = []
    costs = {}
    monkeypatch.setattr(_fs, "_pread_once", lambda fd, n, at: (read.append(n), real(fd, n, at))[1])
    for count in (3_000, 30_000):
        path = str(tmp_path / f"open-{count}.krf")
        with RecordFile(path, "a") as f:
            for i in range(count):
                f.commit_record(b"event %08d" % i)
        read.clear()
        with RecordFile(path) as f:
            assert len(f) == count and f[count // 3] == b"event %08d" % (count // 3)
        costs[count] = sum(read)
    assert max(costs.values()) <= 384 * 1024 and costs[30_000] < 1.2 * costs[3_000], costs


def test_readers_refresh_and_follow_sealed_records(path):
    writer = RecordFile(path, "a")
    writer.extend([b"a", b"b"])
    writer.commit()
    reader = RecordFile(path)
    for i in range(300):
        writer.commit_record(b"%d" % i)
        if i % 97 == 0:
            assert reader.refresh() and len(reader) == i + 3 and reader[-1] == b"%d" % i
    assert list(reader.follow(start=2, poll_interval=0.001, timeout=0.01)) == [
        b"%d" % i for i in range(300)
    ]
    writer.close()
    reader.close()


def test_rollback_and_close_keep_sealed_commits(path):
    with RecordFile(path, "a") as f:
        f.commit_record(b"kept")
        f.append(b"dropped")
        f.rollback()
        f.commit_record(b"kept too")
        f.append(b"dropped on close")
    with RecordFile(path) as reader:
        assert list(reader) == [b"kept", b"kept too"]


def test_a_torn_sealed_record_is_dropped_and_the_writer_continues(path, caplog):
    with RecordFile(path, "a") as f:
        for i in range(50):
            f.commit_record(b"record %d" % i)
    os.truncate(path, os.path.getsize(path) - 3)  # the last one, cut short
    with RecordFile(path) as reader:
        assert len(reader) == 49
    with caplog.at_level(logging.WARNING, logger="klepto.records"), RecordFile(path, "a") as f:
        assert len(f) == 49
        f.commit_record(b"after")
    assert "torn tail" in caplog.text
    with RecordFile(path) as reader:
        assert reader[-1] == b"after" and len(reader) == 50 and reader.verify().ok


def test_damage_followed_by_intact_sealed_records_is_never_truncated(path, caplog):
    with RecordFile(path, "a") as f:
        for i in range(50):
            f.commit_record(b"record %03d" % i)
    data = bytearray(raw(path))
    where = data.rindex(b"record 040")
    data[where + 3] ^= 0xFF  # damage inside record 40; records 41..49 follow intact
    put(path, data)
    with caplog.at_level(logging.WARNING), RecordFile(path) as reader:
        assert len(reader) == 40  # as of the damage, never past it, and says so
        assert "followed by an intact commit" in caplog.text
        assert not reader.verify().ok
    with pytest.raises(CorruptRecordError, match="not truncating"):
        RecordFile(path, "a")
    assert os.path.getsize(path) == len(data)  # nothing was cut
    salvaged = path + ".salvaged"
    report = RecordFile.salvage(path, salvaged)
    assert report.records == 40 and not report.complete
    with RecordFile(salvaged) as copy:
        assert copy[:] == [b"record %03d" % i for i in range(40)] and copy.verify().ok


def test_verify_reports_a_damaged_sealed_record_before_the_last_full_commit(path):
    with RecordFile(path, "a") as f:
        for i in range(20):
            f.commit_record(b"record %03d" % i)
        f.extend([b"x", b"y"])
        f.commit()  # a full commit: its pointer vouches for everything before it
    data = bytearray(raw(path))
    data[data.index(b"record 005") + 2] ^= 1
    put(path, data)
    with pytest.raises(CorruptRecordError):
        RecordFile(path)


def test_version_1_files_are_read_and_written_as_version_1(path):
    with RecordFile(path, "a", sealed_commits=False) as f:
        for i in range(20):
            f.commit_record(b"%d" % i)
    as_version_1(path)
    with RecordFile(path, "a") as f:
        assert len(f) == 20
        for i in range(20, 40):
            f.commit_record(b"%d" % i)  # a version 1 file gets full commits only
    assert struct.unpack_from("<H", raw(path), 8)[0] == 1 and SEALED not in kinds(path)
    with RecordFile(path) as reader:
        assert list(reader) == [b"%d" % i for i in range(40)] and reader.verify().ok


def test_a_sealed_record_in_a_version_1_file_is_not_a_commit(path):
    with RecordFile(path, "a") as f:
        f.extend([b"a", b"b"])
        f.commit()
        f.commit_record(b"c")
    as_version_1(path)
    with RecordFile(path) as reader:
        assert list(reader) == [b"a", b"b"]


def test_a_sealed_record_from_another_file_does_not_check_out(tmp_path):
    first, second = str(tmp_path / "one"), str(tmp_path / "two")
    for name in (first, second):
        with RecordFile(name, "a") as f:
            f.extend([b"a", b"b"])
            f.commit()
    with RecordFile(first, "a") as f:
        f.commit_record(b"from the first file")
    foreign = raw(first)[os.path.getsize(second) :]
    with open(second, "ab") as out:  # the same bytes, where the next commit would start
        out.write(foreign)
    with RecordFile(second) as reader:
        assert list(reader) == [b"a", b"b"]


def test_durable_sealed_commit_syncs_once(path, monkeypatch):
    calls = []
    real = _recordwriter.sync
    monkeypatch.setattr(_recordwriter, "sync", lambda fd: (calls.append(fd), real(fd))[1])
    with RecordFile(path, "a", durability="durable") as f:
        f.extend([b"a", b"b"])
        f.commit()
        calls.clear()
        f.commit_record(b"c")
        assert len(calls) == 1 and kinds(path)[-1] == SEALED


def test_an_io_error_in_a_sealed_commit_leaves_the_file_usable(path, monkeypatch):
    with RecordFile(path, "a") as f:
        f.commit_record(b"before")

        def failing(*args):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(_fs, "_pwrite_once", failing)
        with pytest.raises(OSError):
            f.commit_record(b"lost")
        monkeypatch.undo()
        assert len(f) == 1
        f.commit_record(b"after")
    with RecordFile(path) as reader:
        assert list(reader) == [b"before", b"after"] and reader.verify().ok


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_cannot_commit_through_the_parents_writer(path):
    f = RecordFile(path, "a")
    f.commit_record(b"parent")
    committer = f.committer()
    pid = os.fork()
    if pid == 0:
        codes = []
        for attempt in (lambda: f.commit_record(b"child"), lambda: committer(b"child")):
            try:
                attempt()
                codes.append(1)
            except LockedError:
                codes.append(0)
        os._exit(sum(codes))
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    f.commit_record(b"parent again")
    f.close()
    with RecordFile(path) as reader:
        assert list(reader) == [b"parent", b"parent again"]


def test_threads_read_while_the_writer_seals(path):
    with RecordFile(path, "a") as writer:
        writer.commit_record(b"0")
        errors: list[str] = []
        stop = threading.Event()

        def read() -> None:
            reader = RecordFile(path)
            while not stop.is_set():
                reader.refresh()
                n = len(reader)
                if reader[n - 1] != b"%d" % (n - 1):
                    errors.append(f"record {n - 1}")
            reader.close()

        threads = [threading.Thread(target=read) for _ in range(3)]
        for thread in threads:
            thread.start()
        for i in range(1, 3000):
            writer.commit_record(b"%d" % i)
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []


def test_a_shared_file_reads_sealed_records(path):
    with RecordFile(path, "a", compression=None) as f:
        f.extend([b"a", b"b"])
        f.commit()
    shared = SharedRecordFile(path)
    point = shared.commit_point
    with RecordFile(path, "a", compression=None) as f:
        for i in range(40):
            f.commit_record(b"sealed %d" % i)
    change = shared.poll()
    assert change.count == 42 and change.records == [b"sealed %d" % i for i in range(40)]
    assert list(shared.scan(5, 9)) == [b"sealed %d" % i for i in range(3, 7)]
    assert all(shared.record_in_frame(i, shared.frame_of(i)) == shared[i] for i in range(42))
    sealed_point = shared.commit_point
    assert sealed_point.timestamp_ns == 0 and shared.holds(sealed_point) and shared.holds(point)
    assert not shared.holds(sealed_point._replace(count=41))
    with shared.turn():  # its own writes stay full commits
        shared.append(b"full")
        shared.commit()
    assert kinds(path)[-1] == 6 and shared[-1] == b"full"
    shared.close()


def test_record_in_frame_finds_each_sealed_record_of_a_run(tmp_path):
    """Direct access (as the file archive reads): every record of a run by hops over the
    headers before it, and still past a damaged neighbour (its own CRC vouches for it)."""
    path = tmp_path / "run.krf"
    shared = SharedRecordFile(path, sealed_commits=True)
    values = [b"value %d " % i * (i + 1) for i in range(12)]
    for value in values:
        with shared.turn():
            shared.append(value)
            shared.commit()
    offsets = [shared.frame_of(i) for i in range(len(values))]
    assert [shared.record_in_frame(i, offsets[i]) for i in range(12)] == values
    data = bytearray(raw(path))
    data[data.index(values[3]) + 2] ^= 0xFF  # damage record 3, inside the run
    put(path, data)
    reader = SharedRecordFile(path, sealed_commits=True)
    assert bytes(reader.record_in_frame(7, offsets[7])) == values[7]
    with pytest.raises(CorruptRecordError):
        reader.record_in_frame(3, offsets[3])
