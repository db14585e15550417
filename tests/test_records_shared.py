"""SharedRecordFile: record files kept open by many processes that take turns writing."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time

import pytest

from klepto import _recordwatch
from klepto._recordcreate import RecordFileReadOnly
from klepto._recordshare import Change, SharedRecordFile, exclusive, frame_offsets
from klepto.errors import CorruptRecordError
from klepto.records import RecordFile


def write(shared: SharedRecordFile, *records: bytes) -> None:
    with shared.turn():
        shared.extend(records)
        shared.commit()


def test_created_with_metadata_and_shared_between_objects(tmp_path):
    path = tmp_path / "shared.rec"
    a = SharedRecordFile(path, metadata=b"settings")
    b = SharedRecordFile(path, metadata=b"ignored: the file exists")
    assert b.get_metadata() == b"settings"
    write(a, b"one")
    assert b.poll() == Change(False, 0, 1, [b"one"])  # the new records come along
    assert b.poll() is None
    write(b, b"two", b"three")
    with a.turn() as change:
        assert change[:3] == (False, 1, 3)
        assert list(a) == [b"one", b"two", b"three"]
    with a.turn() as change:
        assert change is None  # nobody wrote since: the writer is reused
    assert RecordFile(path)[:] == [b"one", b"two", b"three"]


def test_uncommitted_records_are_discarded_at_the_end_of_a_turn(tmp_path):
    shared = SharedRecordFile(tmp_path / "f")
    write(shared, b"kept")
    with pytest.raises(RuntimeError), shared.turn():
        shared.append(b"lost")
        raise RuntimeError("abort")
    with shared.turn():
        shared.append(b"after")
        shared.commit()
    assert list(SharedRecordFile(tmp_path / "f")) == [b"kept", b"after"]


def test_nested_turns_join_the_outer_one(tmp_path):
    shared = SharedRecordFile(tmp_path / "f")
    with shared.turn():
        shared.append(b"a")
        with shared.turn() as inner:
            assert inner is None
            shared.append(b"b")
        shared.commit()
    assert list(shared) == [b"a", b"b"]


def test_a_turn_truncates_a_torn_tail(tmp_path):
    path = tmp_path / "f"
    shared = SharedRecordFile(path)
    write(shared, b"x")
    end = os.path.getsize(path)
    with open(path, "ab") as handle:
        handle.write(os.urandom(300))  # a killed writer's half-written commit
    other = SharedRecordFile(path)
    assert other.poll() is None and list(other) == [b"x"]
    write(other, b"y")
    assert list(SharedRecordFile(path)) == [b"x", b"y"]
    assert os.path.getsize(path) > end


def test_rewrite_is_noticed_by_other_objects(tmp_path):
    path = tmp_path / "f"
    a, b = SharedRecordFile(path), SharedRecordFile(path)
    write(a, b"old1", b"old2")
    b.poll()
    with pytest.raises(RecordFileReadOnly), a.rewrite():
        pass
    with a.turn():
        with a.rewrite() as fresh:
            fresh.append(b"new")
            fresh.set_metadata(b"m")
        a.append(b"after")
        a.commit()
    assert b.poll()[:3] == (True, 0, 2)
    assert list(b) == [b"new", b"after"] and b.get_metadata() == b"m"


def test_a_deleted_file_is_recreated_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(_recordwatch, "REFRESH_SECONDS", 0.0)  # look at the file every poll
    path = tmp_path / "f"
    shared = SharedRecordFile(path, metadata=b"meta")
    write(shared, b"x")
    os.unlink(path)
    assert shared.poll()[:3] == (True, 0, 0)
    assert len(shared) == 0 and shared.get_metadata() == b"meta"
    with pytest.raises(FileNotFoundError):
        SharedRecordFile(tmp_path / "absent", create=False)


def test_poll_reads_many_commits_in_one_pass(tmp_path):
    path = tmp_path / "f"
    writer, reader = SharedRecordFile(path), SharedRecordFile(path)
    records = [os.urandom(i * 13 % 200 + 1) for i in range(700)]  # index pages, checkpoints
    for record in records:
        write(writer, record)
    change = reader.poll()
    assert change == Change(False, 0, 700, records)
    assert list(reader) == records == [reader[i] for i in range(700)]
    write(writer, b"a", b"b")  # several records in one frame: read by scan() instead
    change = reader.poll()
    assert change == Change(False, 700, 702) and list(reader.scan(700, 702)) == [b"a", b"b"]
    big = [os.urandom(100_000) for _ in range(4)]  # more than one read's worth
    for record in big:
        write(reader, record)
    assert writer.poll() == Change(False, 702, 706)
    assert list(writer.scan(702, 706)) == big and writer[705] == big[-1]


def test_direct_record_access(tmp_path):
    for compression in (None, "zlib"):
        shared = SharedRecordFile(tmp_path / f"f{compression}", compression=compression)
        records = [bytes([i % 251]) * (i * 37 % 700 + 1) for i in range(60)]
        write(shared, *records[:50])  # one batch: several records per frame
        for record in records[50:]:
            write(shared, record)
        for i, record in enumerate(records):
            assert shared.record_in_frame(i, shared.frame_of(i)) == record
        numbers = [59, 3, 50, 0, 60, 61]  # any order; not (yet) committed: 0
        expected = [shared.frame_of(n) for n in numbers[:4]] + [0, 0]
        assert frame_offsets(shared, numbers) == expected
        with pytest.raises(CorruptRecordError):
            shared.record_in_frame(55, shared.frame_of(54))
        with pytest.raises(IndexError):
            shared.frame_of(60)


def test_commit_points(tmp_path):
    shared = SharedRecordFile(tmp_path / "f")
    write(shared, b"a")
    point = shared.commit_point
    write(shared, b"b")
    assert shared.holds(point) and shared.holds(shared.commit_point)
    assert not shared.holds(point._replace(timestamp_ns=point.timestamp_ns + 1))
    with shared.turn(), shared.rewrite() as fresh:
        fresh.append(b"c")
    assert not shared.holds(point)


def test_symlinks_are_refused_and_never_written_through(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    (tmp_path / "f").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        SharedRecordFile(tmp_path / "f")
    (tmp_path / "g.lock").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        SharedRecordFile(tmp_path / "g")  # creating it takes the lock
    assert target.read_bytes() == b"precious"


def test_read_only_file_reads_and_refuses_turns(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes")
    path = tmp_path / "f"
    write(SharedRecordFile(path), b"x")
    path.chmod(0o400)
    shared = SharedRecordFile(path)
    assert shared.read_only and list(shared) == [b"x"]
    with pytest.raises(RecordFileReadOnly):
        write(shared, b"y")


def test_strict_refuses_a_damaged_last_commit(tmp_path, caplog):
    path = tmp_path / "f"
    shared = SharedRecordFile(path)
    write(shared, b"first")
    write(shared, b"second")
    shared.close()
    os.truncate(path, os.path.getsize(path) - 10)
    with pytest.raises(CorruptRecordError):
        SharedRecordFile(path, strict=True)
    with caplog.at_level(logging.WARNING, logger="klepto.records"):
        lenient = SharedRecordFile(path)
    assert list(lenient) == [b"first"] and "reading as of commit" in caplog.text


def _sealed_file(path, count: int) -> list[int]:
    """``count`` one-record commits (sealed records); the file size after each."""
    shared = SharedRecordFile(path, sealed_commits=True)
    sizes = []
    for i in range(count):
        write(shared, b"record %d" % i)
        sizes.append(os.path.getsize(path))
    shared.close()
    return sizes


def test_a_file_cut_after_an_acknowledged_sealed_commit_is_reported(tmp_path, caplog):
    """The cut falls exactly between two sealed records: no torn bytes are left, only the
    lock file's note tells that a third commit was acknowledged."""
    path = tmp_path / "f"
    sizes = _sealed_file(path, 3)
    os.truncate(path, sizes[1])
    with pytest.raises(CorruptRecordError, match="acknowledged") as caught:
        SharedRecordFile(path, strict=True, sealed_commits=True)
    assert caught.value.path == str(path) and caught.value.offset == sizes[1]
    with caplog.at_level(logging.WARNING, logger="klepto.records"):
        lenient = SharedRecordFile(path, sealed_commits=True)
    assert list(lenient) == [b"record 0", b"record 1"] and "acknowledged" in caplog.text
    with lenient.turn():  # the writer repairs and notes what the file holds, committing nothing
        pass
    assert list(SharedRecordFile(path, strict=True)) == [b"record 0", b"record 1"]


def test_a_writer_notices_a_cut_back_to_what_it_knows(tmp_path):
    """``early`` knows one record; another writer commits a second, and the file is cut
    back to the first: its size is what ``early`` expects, the note tells the loss."""
    path = tmp_path / "f"
    early = SharedRecordFile(path, strict=True, sealed_commits=True)
    write(early, b"a")
    size = os.path.getsize(path)
    write(SharedRecordFile(path, sealed_commits=True), b"b")
    os.truncate(path, size)
    with pytest.raises(CorruptRecordError, match="acknowledged"):
        write(early, b"c")
    assert list(RecordFile(path)) == [b"a"]  # nothing was written over the loss


def test_the_note_of_another_file_or_a_damaged_note_tells_nothing(tmp_path, caplog):
    path = tmp_path / "f"
    sizes = _sealed_file(path, 2)
    lock = str(path) + ".lock"
    with open(lock, "r+b") as handle:
        handle.seek(20)
        handle.write(b"\xff")  # the note's checksum no longer matches
    os.truncate(path, sizes[0])
    with caplog.at_level(logging.WARNING, logger="klepto.records"):
        assert list(SharedRecordFile(path, strict=True)) == [b"record 0"]
    other = tmp_path / "g"
    _sealed_file(other, 3)
    os.replace(str(other) + ".lock", lock)  # a note about file g, next to file f
    assert list(SharedRecordFile(path, strict=True)) == [b"record 0"]


def test_a_deleted_lock_file_is_replaced(tmp_path):
    path = tmp_path / "f"
    shared = SharedRecordFile(path)
    write(shared, b"a")
    os.unlink(str(path) + ".lock")
    write(shared, b"b")
    assert os.path.exists(str(path) + ".lock")
    with shared.turn():
        shared.remove_lock_file()
    assert not os.path.exists(str(path) + ".lock")
    write(shared, b"c")
    assert list(shared) == [b"a", b"b", b"c"]


def _append_many(path: str, worker: int, count: int) -> None:
    shared = SharedRecordFile(path)
    for i in range(count):
        write(shared, f"{worker}:{i}".encode())


def test_processes_taking_turns_lose_nothing(tmp_path):
    path = str(tmp_path / "f")
    SharedRecordFile(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, w, 150)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    records = list(SharedRecordFile(path))
    assert sorted(records) == sorted(f"{w}:{i}".encode() for w in range(4) for i in range(150))


def _write_then_exit(path: str) -> None:
    write(SharedRecordFile(path), b"from the other process")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_waits_for_the_parents_turn(tmp_path):
    path = tmp_path / "f"
    shared = SharedRecordFile(path)
    write(shared, b"parent")
    with shared.turn():
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            status = 1
            try:
                write(shared, b"child")
                status = 0
            finally:
                os._exit(status)
        time.sleep(0.2)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # blocked behind the parent's lock
        shared.append(b"parent again")
        shared.commit()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    shared.poll()
    assert list(shared) == [b"parent", b"parent again", b"child"]


def test_exclusive_blocks_turns_elsewhere(tmp_path):
    path = str(tmp_path / "f")
    SharedRecordFile(path)
    context = multiprocessing.get_context("spawn")
    with exclusive(path):
        other = context.Process(target=_write_then_exit, args=(path,))
        other.start()
        other.join(0.5)
        assert other.exitcode is None  # waiting for the lock
    other.join(60)
    assert other.exitcode == 0
    assert list(SharedRecordFile(path)) == [b"from the other process"]


def test_a_turn_that_recreates_a_deleted_file_keeps_its_lock(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "f"
    shared = SharedRecordFile(path)
    write(shared, b"a")
    os.unlink(path)  # by hand, or another object's __drop__
    assert shared.start_turn()[:3] == (True, 0, 0)  # a new, empty file
    other = os.open(str(path) + ".lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # another writer must still wait
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shared.append(b"b")
        shared.commit()
    finally:
        os.close(other)
        shared.finish_turn()
    assert SharedRecordFile(path)[:] == [b"b"]
