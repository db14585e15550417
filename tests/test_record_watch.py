"""The note watch: a reader of a shared record file that nobody writes reads 40 bytes per
poll instead of looking at the file, and still sees every acknowledged commit, and every
file klepto publishes over it, at once (klepto._recordwatch)."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from klepto import _recordwatch
from klepto._recordack import SIZE as NOTE_SIZE
from klepto._recordshare import SharedRecordFile
from klepto.archives import file_archive
from klepto.records import RecordFile, write_records


def write(shared: SharedRecordFile, *records: bytes) -> None:
    with shared.turn():
        shared.extend(records)
        shared.commit()


@pytest.fixture
def fstat_calls(monkeypatch):
    """How many times ``os.fstat`` was called since the test started."""
    calls = [0]
    real = os.fstat

    def counting(fd):
        calls[0] += 1
        return real(fd)

    monkeypatch.setattr(os, "fstat", counting)
    return calls


@pytest.fixture
def later(monkeypatch):
    """Move the watch's clock past its refresh."""

    def move_on():
        now = _recordwatch.monotonic()
        monkeypatch.setattr(
            _recordwatch, "monotonic", lambda: now + 2 * _recordwatch.REFRESH_SECONDS
        )

    return move_on


def test_an_unwritten_file_is_polled_without_looking_at_it(tmp_path, fstat_calls):
    path = tmp_path / "f"
    write(SharedRecordFile(path), b"one")
    reader = SharedRecordFile(path)
    assert reader.poll() is None  # the first poll looks at the file, and arms the watch
    before = fstat_calls[0]
    for _ in range(100):
        assert reader.poll() is None
    assert fstat_calls[0] == before


def test_a_commit_by_another_object_is_seen_at_once(tmp_path):
    path = tmp_path / "f"
    writer, reader = SharedRecordFile(path), SharedRecordFile(path)
    write(writer, b"one")
    assert reader.poll()[:3] == (False, 0, 1)
    assert reader.poll() is None
    write(writer, b"two")
    assert reader.poll()[:3] == (False, 1, 2)
    assert reader[1] == b"two"


def _write_in_child(path: str, record: bytes) -> None:
    write(SharedRecordFile(path), record)


def test_a_commit_by_another_process_is_seen_at_once(tmp_path):
    path = str(tmp_path / "f")
    reader = SharedRecordFile(path)
    assert reader.poll() is None and reader.poll() is None
    child = multiprocessing.get_context("spawn").Process(target=_write_in_child, args=(path, b"x"))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert reader.poll()[:3] == (False, 0, 1)
    assert reader[0] == b"x"


def test_own_commits_arm_the_watch(tmp_path, fstat_calls):
    shared = SharedRecordFile(tmp_path / "f")
    write(shared, b"one")
    before = fstat_calls[0]
    assert shared.poll() is None
    assert fstat_calls[0] == before


def test_a_commit_nobody_noted_is_seen_after_the_refresh(tmp_path, later):
    path = tmp_path / "f"
    writer, reader = SharedRecordFile(path), SharedRecordFile(path)
    write(writer, b"one")
    assert reader.poll()[:3] == (False, 0, 1)
    lock = str(path) + ".lock"
    noted = note_in(lock)
    write(writer, b"two")
    with open(lock, "r+b") as f:  # as if the writer had died between commit and note
        f.write(noted)
    assert reader.poll() is None  # not acknowledged: not looked for yet
    later()
    assert reader.poll()[:3] == (False, 1, 2)


def test_a_file_deleted_by_hand_is_noticed_after_the_refresh(tmp_path, later):
    path = tmp_path / "f"
    shared = SharedRecordFile(path, metadata=b"meta")
    write(shared, b"x")
    os.unlink(path)
    assert shared.poll() is None
    later()
    assert shared.poll()[:3] == (True, 0, 0)
    assert len(shared) == 0


def test_without_the_os_lock_every_poll_looks_at_the_file(tmp_path, fstat_calls):
    shared = SharedRecordFile(tmp_path / "f", lock=False)
    write(shared, b"x")
    before = fstat_calls[0]
    for _ in range(10):
        assert shared.poll() is None
    assert fstat_calls[0] == before + 10


def test_a_damaged_note_is_never_trusted(tmp_path, fstat_calls):
    path = tmp_path / "f"
    write(SharedRecordFile(path), b"x")
    with open(str(path) + ".lock", "r+b") as f:
        f.write(b"\xff" * NOTE_SIZE)
    reader = SharedRecordFile(path)
    for _ in range(3):
        assert reader.poll() is None
    before = fstat_calls[0]
    assert reader.poll() is None
    assert fstat_calls[0] == before + 1


def archives_with_armed_reader(tmp_path):
    """A file_archive path, a writer of it that wrote ``k``, and a reader that read it back
    twice (its watch armed)."""
    path = str(tmp_path / "a.pkl")
    writer = file_archive(path, cached=False)
    reader = file_archive(path, cached=False)
    writer["k"] = 1
    assert reader["k"] == 1 and reader["k"] == 1
    return path, writer, reader


def note_in(lock_path):
    with open(lock_path, "rb") as f:
        return f.read(NOTE_SIZE)


def test_a_drop_is_seen_at_once_by_readers(tmp_path):
    path, writer, reader = archives_with_armed_reader(tmp_path)
    writer.__drop__()
    assert "k" not in reader
    fresh = file_archive(path, cached=False)
    fresh["new"] = 2
    assert reader["new"] == 2


def test_a_compaction_by_another_archive_is_seen_at_once(tmp_path):
    path = str(tmp_path / "a.pkl")
    writer = file_archive(path, cached=False)
    reader = file_archive(path, cached=False)
    for i in range(50):
        writer["k"] = i
    writer["other"] = "x"
    assert reader["k"] == 49 and reader["k"] == 49
    writer.compact()
    writer["after"] = 1
    assert reader["after"] == 1 and reader["k"] == 49 and reader["other"] == "x"


def test_a_lock_file_that_cannot_be_read_is_not_tried_again(tmp_path, monkeypatch, fstat_calls):
    tries = [0]

    def refuse(path):
        tries[0] += 1
        raise PermissionError(path)

    monkeypatch.setattr(_recordwatch, "_open_lock_file", refuse)
    path = tmp_path / "f"
    write(SharedRecordFile(path), b"x")
    reader = SharedRecordFile(path)
    for _ in range(5):
        assert reader.poll() is None
    assert tries[0] == 2  # once by the writer, once by the reader: never again
    before = fstat_calls[0]
    reader.poll()
    assert fstat_calls[0] == before + 1  # polls look at the file, as without notes


def test_a_truncated_lock_file_only_costs_the_watch(tmp_path):
    # Some versions of filelock truncate the files they lock: readers must carry on.
    path, writer, reader = archives_with_armed_reader(tmp_path)
    os.truncate(path + ".lock", 0)
    assert reader["k"] == 1
    writer["k"] = 2
    assert reader["k"] == 2


def test_a_copy_over_an_archive_is_seen_at_once_by_its_readers(tmp_path):
    source = file_archive(str(tmp_path / "source.pkl"), cached=False)
    target = str(tmp_path / "target.pkl")
    reader = file_archive(target, cached=False)
    file_archive(target, cached=False)["k"] = "old"
    assert reader["k"] == "old" and reader["k"] == "old"  # armed
    source["k"] = "new"
    source.copy(target)
    assert reader["k"] == "new"


def test_a_file_published_over_a_watched_one_is_seen_at_once(tmp_path):
    path = tmp_path / "f"
    write(SharedRecordFile(path), b"old")
    reader = SharedRecordFile(path)
    assert reader.poll() is None and reader.poll() is None  # armed
    write_records(path, [b"new", b"er"])
    assert reader.poll()[0] is True
    assert list(reader) == [b"new", b"er"]


def test_the_watch_reads_the_lock_file_that_is_held(tmp_path):
    path = tmp_path / "f"
    reader = SharedRecordFile(path)
    write(SharedRecordFile(path), b"a")
    assert reader.poll()[:3] == (False, 0, 1)  # the watch opened the lock file
    lock = str(path) + ".lock"
    os.unlink(lock)  # deleted by hand; the next writer makes a new one
    write(SharedRecordFile(path), b"b")
    write(reader, b"c")  # the reader locks the new lock file: its watch must follow
    assert os.fstat(reader._watch._fd).st_ino == os.fstat(reader._lock_fd).st_ino
    assert os.stat(lock).st_ino == os.fstat(reader._lock_fd).st_ino
    assert list(reader) == [b"a", b"b", b"c"]


def _filelock_truncates() -> bool:
    import filelock

    version = tuple(int(part) for part in filelock.__version__.split(".")[:3] if part.isdigit())
    return version < (4, 2, 1)  # see setup.cfg: the floor on Python 3.10 is older


@pytest.mark.skipif(_filelock_truncates(), reason="this filelock truncates the files it locks")
def test_a_record_file_writer_on_an_archive_leaves_its_note(tmp_path):
    # The writer claim locks the same lock file through filelock, which must not truncate
    # it (filelock >= 4.2.1, see setup.cfg): the note is what readers and writers check.
    path, _, reader = archives_with_armed_reader(tmp_path)
    noted = note_in(path + ".lock")
    RecordFile(path, "a").close()
    assert note_in(path + ".lock") == noted
    assert reader["k"] == 1


def test_a_copy_waits_for_a_turn_on_its_target(tmp_path):
    source = file_archive(str(tmp_path / "source.pkl"), cached=False)
    source["a"] = 1
    target = str(tmp_path / "target.pkl")
    source.copy(target)
    writer = file_archive(target, cached=False)
    writer["w"] = 2
    copied = threading.Event()
    with writer.transaction():  # a turn on the target, as another process's write would be
        copier = threading.Thread(target=lambda: (source.copy(target), copied.set()))
        copier.start()
        copier.join(0.5)
        assert not copied.is_set()
        writer["late"] = 3
    copier.join(30)
    assert copied.is_set()
    assert dict(file_archive(target, cached=False)) == {"a": 1}
    writer["after"] = 4  # the target's writer carries on with the copy
    assert dict(file_archive(target, cached=False)) == {"a": 1, "after": 4}
