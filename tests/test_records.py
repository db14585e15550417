"""The record file's API: sequence semantics, commits, rollback, metadata, big records,
options, locking, rewriting, following, verification and a hypothesis model test."""

from __future__ import annotations

import gc
import io
import os
import pickle
import random
import shutil
import stat
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from klepto import _recordwriter, records
from klepto.errors import ArchiveClosedError, CorruptRecordError, LockedError
from klepto.records import (
    InvalidRecordFile,
    RecordFile,
    RecordFileClosed,
    RecordFileLocked,
    RecordFileReadOnly,
    write_records,
)


def make_records(n: int, seed: int = 0, max_size: int = 300) -> list[bytes]:
    rnd = random.Random(seed)
    alphabet = b"abcdefgh 0123\n"
    return [bytes(rnd.choices(alphabet, k=rnd.randrange(0, max_size))) for _ in range(n)]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "log.krf")


@pytest.fixture
def filled(path):
    data = make_records(3000)
    with RecordFile(path, "a") as f:
        for start in range(0, len(data), 700):
            f.extend(data[start : start + 700])
            f.commit()
    return path, data


# --- sequence semantics --------------------------------------------------------------------------


def test_sequence_api(filled):
    path, data = filled
    with RecordFile(path) as f:
        assert len(f) == len(data)
        assert list(f) == data
        assert f[0] == data[0] and f[-1] == data[-1] and f[-3000] == data[0]
        assert f[10:20] == data[10:20]
        assert f[:5] == data[:5] and f[-5:] == data[-5:]
        assert f[::-97] == data[::-97] and f[5:2900:13] == data[5:2900:13]
        assert f[2000:100] == []
        assert list(reversed(f))[:3] == data[::-1][:3]
        assert list(f.records(2990)) == data[2990:]
        assert list(f.records(-3, -1)) == data[-3:-1]
        assert data[1234] in f
        assert f.index(data[1234]) == data.index(data[1234])
        for bad in (3000, -3001, 10**12):
            with pytest.raises(IndexError):
                f[bad]
        with pytest.raises(TypeError):
            f["x"]


def test_str_records_and_encoding(path):
    texts = ["plain", "ünïcødé ✓", "", "x" * 5000, "\U0001f600 emoji"]
    with RecordFile(path, "a", encoding="utf-8") as f:
        f.extend(texts)
        f.commit()
        assert list(f) == texts
    with RecordFile(path, encoding="utf-8") as f:
        assert list(f) == texts and f[1] == texts[1]
    with RecordFile(path) as f:
        assert f[1] == texts[1].encode("utf-8")
    latin = str(os.path.join(os.path.dirname(path), "latin.krf"))
    with RecordFile(latin, "a", encoding="latin-1") as f:
        f.append("café")
        f.commit()
    with RecordFile(latin) as f:
        assert f[0] == "café".encode("latin-1")


def test_bytes_like_records(path):
    with RecordFile(path, "a") as f:
        assert f.append(bytearray(b"ab")) == 0
        assert f.append(memoryview(b"cd")) == 1
        with pytest.raises(TypeError):
            f.append(42)
        f.commit()
        assert list(f) == [b"ab", b"cd"]


# --- commits, visibility, rollback, transactions -------------------------------------------------


def test_readers_see_only_commits(path):
    writer = RecordFile(path, "a")
    reader = RecordFile(path)
    writer.extend([b"a", b"b"])
    assert len(writer) == 2 and writer.committed_count == 0 and writer[1] == b"b"
    assert not reader.refresh() and len(reader) == 0
    assert writer.commit() is True
    assert reader.refresh() and list(reader) == [b"a", b"b"]
    assert writer.commit() is False  # nothing new
    assert writer.commit_seq == 1 and reader.commit_seq == 1
    writer.append(b"c")
    assert not reader.refresh() and len(reader) == 2
    writer.close()  # discards the uncommitted record
    assert not reader.refresh()
    with RecordFile(path) as again:
        assert list(again) == [b"a", b"b"]
    reader.close()


def test_rollback_discards_records_and_metadata(path):
    with RecordFile(path, "a") as f:
        f.extend(make_records(500, 1))
        f.set_metadata(b"kept")
        f.commit()
        size = os.path.getsize(path)
        f.extend(make_records(3000, 2, 2000))  # big enough to reach the file before commit
        f.set_metadata(b"dropped")
        assert os.path.getsize(path) > size
        f.rollback()
        assert len(f) == 500 and f.get_metadata() == b"kept"
        assert os.path.getsize(path) == size
        f.append(b"after")
        f.commit()
    with RecordFile(path) as f:
        assert len(f) == 501 and f[-1] == b"after" and f.get_metadata() == b"kept"
        assert f.verify().ok


def test_transaction(path):
    with RecordFile(path, "a") as f:
        with f.transaction():
            f.append(b"1")
            with f.transaction():  # joins the outer one
                f.append(b"2")
            assert f.committed_count == 0
        assert f.committed_count == 2
        with pytest.raises(RuntimeError), f.transaction():
            f.append(b"3")
            raise RuntimeError("boom")
        assert list(f) == [b"1", b"2"]


def test_metadata(path):
    with RecordFile(path, "a", metadata=b"m0") as f:
        assert f.get_metadata() == b"m0"
        reader = RecordFile(path)
        assert reader.get_metadata() == b"m0"
        f.set_metadata(b"m1")
        assert f.get_metadata() == b"m1"  # the writer sees its own
        assert reader.get_metadata() == b"m0"
        assert f.commit() is True  # a metadata-only commit
        assert reader.get_metadata() == b"m0"  # a snapshot until refresh
        assert reader.refresh() and reader.get_metadata() == b"m1"  # never stale after it
        f.set_metadata(None)
        f.commit()
        reader.refresh()
        assert reader.get_metadata() is None
        f.set_metadata(b"")
        f.commit()
        reader.refresh()
        assert reader.get_metadata() == b""
        reader.close()
    with RecordFile(path, "a", metadata=b"ignored") as f:
        assert f.get_metadata() == b""


# --- sizes ---------------------------------------------------------------------------------------


def test_empty_and_big_records(path, monkeypatch):
    monkeypatch.setattr(_recordwriter, "STREAM_AT", 1 << 20)
    big = os.urandom(3 << 20)  # incompressible: streamed raw
    text = b"0123456789abcdef" * (200_000)  # compressible: streamed compressed
    data = [b"", b"x", big, b"", text, b"y" * 4096, b"z" * 70_000]
    with RecordFile(path, "a") as f:
        assert f.extend(data) == range(len(data))
        assert f[2] == big  # the writer reads its own uncommitted big record
        f.commit()
    with RecordFile(path) as f:
        assert list(f) == data
        assert b"".join(f.record_chunks(4, 100_000)) == text
        assert f.verify().ok
    assert os.path.getsize(path) < len(big) + len(text) // 4


@pytest.mark.parametrize("compression", ["zlib", "zstd", None])
def test_record_chunks_stream_big_records(path, monkeypatch, compression):
    monkeypatch.setattr(_recordwriter, "STREAM_AT", 1 << 20)
    text = b"".join(b"line %d of a big record\n" % i for i in range(200_000))
    with RecordFile(path, "a", compression=compression) as f:
        f.extend([b"small", text])
        assert b"".join(f.record_chunks(1, 50_000)) == text  # the writer, uncommitted
        f.commit()
    with RecordFile(path) as f:
        chunks = list(f.record_chunks(-1, 50_000))
        assert b"".join(chunks) == text and max(map(len, chunks)) <= 50_000
        assert list(f.record_chunks(0)) == [b"small"]
        offset = f._reader.find(f._state.index, 1)[1]
    with open(path, "r+b") as raw:  # damage the big record's frame near its end
        raw.seek(offset + 8)
        body_len = int.from_bytes(raw.read(8), "little")
        raw.seek(offset + 32 + body_len - 3)
        byte = raw.read(1)
        raw.seek(offset + 32 + body_len - 3)
        raw.write(bytes([byte[0] ^ 1]))
    with RecordFile(path) as f:
        chunks = f.record_chunks(1, 50_000)
        with pytest.raises(CorruptRecordError):
            next(chunks)  # checked before the first byte is handed out


def test_append_stream(path):
    payload = b"stream me " * 500_000
    with RecordFile(path, "a") as f:
        f.append(b"before")
        assert f.append_stream(io.BytesIO(payload)) == 1
        assert f.append_stream([payload[:10], memoryview(payload)[10:]]) == 2
        assert f.append_stream([]) == 3
        f.commit()
    with RecordFile(path) as f:
        assert [len(r) for r in f] == [6, len(payload), len(payload), 0]
        assert f[1] == payload and f[3] == b""


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression": None},
        {"compression": "zlib", "level": 9, "dictionary_size": 0},
        {"compression": "zstd"},
        {"frame_size": 64},
        {"frame_size": 65536, "dictionary_size": 32768},
    ],
    ids=["default", "raw", "zlib9-nodict", "zstd", "tiny-frames", "big-frames"],
)
def test_format_options_round_trip(path, options):
    data = make_records(2500, 3)
    with RecordFile(path, "a", **options) as f:
        for start in range(0, len(data), 333):
            f.extend(data[start : start + 333])
            f.commit()
    with RecordFile(path, "a", compression=None) as f:
        f.append(b"more")  # options are read back from the file, not from the call
        f.commit()
    with RecordFile(path) as f:
        assert list(f) == [*data, b"more"]
        assert all(f[i] == data[i] for i in range(0, 2500, 7))
        assert f.verify().ok


def test_invalid_options(path):
    with pytest.raises(ValueError):
        RecordFile(path, "rw")
    with pytest.raises(ValueError):
        RecordFile(path, "a", durability="sometimes")
    with pytest.raises(ValueError):
        RecordFile(path, "a", compression="brotli")
    with pytest.raises(ValueError):
        RecordFile(path, "a", frame_size=10)
    with pytest.raises(ValueError):
        RecordFile(path, "a", dictionary_size=65536)
    assert not os.path.exists(path)


def test_deep_index_and_checkpoints(path, monkeypatch):
    """A tiny fanout makes a deep index tree; many small commits cross many checkpoints."""
    monkeypatch.setattr(records, "DEFAULT_FANOUT", 3)
    data = make_records(2000, 4, 40)
    with RecordFile(path, "a", frame_size=64) as f:
        for i, record in enumerate(data):
            f.append(record)
            if i % 3 == 0:
                f.commit()
        f.commit()
    with RecordFile(path) as f:
        assert list(f) == data
        order = list(range(len(data)))
        random.Random(5).shuffle(order)
        assert all(f[i] == data[i] for i in order[:500])
        assert f.verify().ok
    with RecordFile(path, "a") as f:  # the writer rebuilds the same index on reopen
        f.append(b"tail")
        f.commit()
        assert f[1999] == data[-1]
    with RecordFile(path) as f:
        assert f[-2:] == [data[-1], b"tail"] and f.verify().ok


def test_open_reads_a_bounded_amount(tmp_path, monkeypatch):
    """Opening never replays the file: a 10x bigger file costs the same bytes to open."""
    from klepto import _fs

    real = _fs._pread_once
    read: list[int] = []
    costs = {}
    for count in (2_000, 20_000):
        path = str(tmp_path / f"open-{count}.krf")
        with RecordFile(path, "a", frame_size=64) as f:  # a frame per record: a deep index
            for start in range(0, count, 50):
                f.extend(b"record %08d" % i for i in range(start, start + 50))
                f.commit()
        read.clear()
        monkeypatch.setattr(
            _fs, "_pread_once", lambda fd, n, at: (read.append(n), real(fd, n, at))[1]
        )
        with RecordFile(path) as f:
            assert len(f) == count and f[count // 3] == b"record %08d" % (count // 3)
        monkeypatch.setattr(_fs, "_pread_once", real)
        costs[count] = sum(read)
    assert costs[20_000] <= 256 * 1024 and costs[2_000] <= 256 * 1024, costs


# --- modes, locking, closing ---------------------------------------------------------------------


def test_modes(path):
    with pytest.raises(FileNotFoundError):
        RecordFile(path)
    with RecordFile(path, "x") as f:
        f.append(b"1")
        f.commit()
    with pytest.raises(FileExistsError):
        RecordFile(path, "x")
    with RecordFile(path, "a") as f:
        assert list(f) == [b"1"]
    with RecordFile(path, "w", metadata=b"new") as f:
        assert len(f) == 0 and f.get_metadata() == b"new"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path + ".lock").st_mode) == 0o600
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".klepto-tmp")] == []


def test_one_writer_per_file(path):
    first = RecordFile(path, "a")
    for lock in (True, False):
        with pytest.raises(RecordFileLocked) as caught:
            RecordFile(path, "a", lock=lock)
        assert isinstance(caught.value, LockedError)
        assert "already open for writing" in str(caught.value)
    RecordFile(path).close()  # readers are always welcome
    first.close()
    RecordFile(path, "a").close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_cannot_use_the_parents_writer(filled):
    path, data = filled
    writer = RecordFile(path, "a")
    pid = os.fork()
    if pid == 0:  # the child: reading works, writing through the parent's object does not
        code = 1
        try:
            if writer[0] == data[0]:
                writer.append(b"from the child")
                writer.commit()
        except LockedError:
            code = 0
        except BaseException:
            code = 2
        try:
            writer.append_stream([b"x" * 10])
            code = 3
        except LockedError:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    writer.append(b"from the parent")  # the parent still holds the lock and the file
    writer.commit()
    writer.close()
    with RecordFile(path) as reader:
        assert len(reader) == len(data) + 1


def test_a_dropped_writer_releases_the_file_at_once(path):
    gc.collect()
    gc.disable()  # no help from the cycle collector: reference counting must be enough
    try:
        for i in range(3):
            RecordFile(path, "a").append(b"%d" % i)  # dropped at once, never closed
        with RecordFile(path, "a") as f:
            assert len(f) == 0  # and what it never committed is gone
    finally:
        gc.enable()


def test_read_only_and_closed_errors(filled):
    path, _ = filled
    f = RecordFile(path)
    for call in (lambda: f.append(b"x"), f.commit, f.rollback, lambda: f.set_metadata(b"")):
        with pytest.raises(RecordFileReadOnly):
            call()
    with pytest.raises(io.UnsupportedOperation):
        f.append(b"x")
    f.close()
    f.close()
    for call in (lambda: f[0], lambda: len(f), f.get_metadata, f.refresh, f.verify):
        with pytest.raises(RecordFileClosed):
            call()
    with pytest.raises(ArchiveClosedError):
        list(f)
    assert "closed" in str(f)


def test_not_a_record_file(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello" * 2000)
    with pytest.raises(InvalidRecordFile) as caught:
        RecordFile(str(junk))
    assert isinstance(caught.value, CorruptRecordError)
    assert str(junk) in str(caught.value) and "offset 0" in str(caught.value)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(InvalidRecordFile):
        RecordFile(str(empty), "a")
    RecordFile(str(empty), "w").close()  # "w" replaces whatever was there


def test_pickle_reopens_a_reader(filled):
    path, data = filled
    with RecordFile(path, "a") as f:
        clone = pickle.loads(pickle.dumps(f))
        assert not clone.writable and len(clone) == len(data) and clone[7] == data[7]
        clone.close()


def test_str_and_properties(filled):
    path, data = filled
    with RecordFile(path) as f:
        assert str(f) == f'"{path}" opened for reading with 3,000 records'
        assert f.path == path and f.mode == "r" and not f.writable and not f.closed
        assert f.durability == "flush" and len(f.file_id) == 32 and f.commit_seq == 5
        assert f.commit_time_ns > 0 and f.committed_count == len(data)


# --- durability, rewrite, write_records ----------------------------------------------------------


def test_durable_mode_fsyncs_once_per_commit(path, monkeypatch):
    calls = []
    real_sync = _recordwriter.sync
    monkeypatch.setattr(_recordwriter, "sync", lambda fd: (calls.append(fd), real_sync(fd)))
    with RecordFile(path, "a", durability="durable") as f:
        calls.clear()
        for i in range(5):
            f.extend([b"r%d" % i] * 50)
            f.commit()
        assert len(calls) == 5
    with RecordFile(path) as f:
        assert len(f) == 250


def test_rewrite_replaces_atomically(filled):
    path, data = filled
    reader = RecordFile(path)
    with RecordFile(path, "a") as f:
        old_id = f.file_id
        with f.rewrite() as fresh:
            fresh.extend(data[::3])
            fresh.set_metadata(b"compacted")
            assert fresh.path != path
        assert f.file_id != old_id and len(f) == len(data[::3])
        f.append(b"next")
        f.commit()
        with pytest.raises(KeyError), f.rewrite() as fresh:
            fresh.append(b"lost")
            raise KeyError("abandon")
        assert len(f) == len(data[::3]) + 1
        f.append(b"pending")
        with pytest.raises(ValueError), f.rewrite():
            pass
    assert len(reader) == len(data) and reader[5] == data[5]  # its old snapshot, intact
    assert reader.refresh() and reader[-1] == b"next" and reader.get_metadata() == b"compacted"
    reader.close()
    assert sorted(os.listdir(os.path.dirname(path))) == ["log.krf", "log.krf.lock"]


def test_write_records(path):
    assert write_records(path, [b"a", "b"], metadata=b"m", compression=None) == 2
    with RecordFile(path) as f:
        assert list(f) == [b"a", b"b"] and f.get_metadata() == b"m"
    assert write_records(path, (str(i) for i in range(100)), durability="durable") == 100
    with RecordFile(path, encoding="utf-8") as f:
        assert f[99] == "99"
    with RecordFile(path, "a"), pytest.raises(RecordFileLocked):
        write_records(path, [b"x"])
    with open(path, "r+b") as raw:  # a damaged old file is replaced, never read
        raw.write(b"garbage")
    assert write_records(path, ["é"], encoding="latin-1", compression="zstd") == 1
    with RecordFile(path) as f:
        assert list(f) == ["é".encode("latin-1")] and f.get_metadata() is None


# --- following -----------------------------------------------------------------------------------


def test_follow_with_injected_sleep_and_clock(path):
    writer = RecordFile(path, "a")
    writer.extend([b"old"])
    writer.commit()
    reader = RecordFile(path)
    now = [0.0]
    batches = iter([[b"a", b"b"], [], [b"c"]])
    changes = []

    def sleep(seconds):
        now[0] += seconds
        batch = next(batches, None)
        if batch:
            writer.extend(batch)
            writer.commit()

    got = list(
        reader.follow(
            poll_interval=1.0,
            timeout=5.0,
            sleep=sleep,
            clock=lambda: now[0],
            on_change=lambda f: changes.append(len(f)),
        )
    )
    assert got == [b"a", b"b", b"c"] and changes == [3, 4]
    assert list(reader.follow(start=0, timeout=0, sleep=sleep, clock=lambda: now[0])) == [
        b"old",
        b"a",
        b"b",
        b"c",
    ]
    writer.close()
    reader.close()


# --- verify --------------------------------------------------------------------------------------


def test_verify_reports_damage(filled):
    path, _ = filled
    with RecordFile(path) as f:
        report = f.verify()
        assert report.ok and report.records == 3000 and report.commits == 5
        assert "ok" in str(report)
    with open(path, "r+b") as raw:
        raw.seek(6000)
        byte = raw.read(1)
        raw.seek(6000)
        raw.write(bytes([byte[0] ^ 0x40]))
    with RecordFile(path) as f:
        report = f.verify()
        assert not report.ok and report.problems
        with pytest.raises(CorruptRecordError) as caught:
            f.verify(raise_errors=True)
        assert path in str(caught.value) and "offset" in str(caught.value)


# --- threads -------------------------------------------------------------------------------------


def test_one_reader_shared_by_threads(filled):
    path, data = filled
    f = RecordFile(path)
    failures = []

    def work(seed):
        rnd = random.Random(seed)
        for _ in range(400):
            i = rnd.randrange(len(data))
            if f[i] != data[i]:
                failures.append(i)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.close()
    assert failures == []


# --- a model -------------------------------------------------------------------------------------


class RecordFileModel(RuleBasedStateMachine):
    """Random appends, commits, rollbacks, metadata, reopenings, against plain lists."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "model.krf")
        self.file = RecordFile(self.path, "a", frame_size=256, dictionary_size=512)
        self.committed: list[bytes] = []
        self.pending: list[bytes] = []
        self.meta = None
        self.meta_pending = self.meta

    def teardown(self):
        self.file.close()
        shutil.rmtree(self.dir)

    @rule(records=st.lists(st.binary(max_size=700), max_size=20))
    def append(self, records):
        for record in records:
            assert self.file.append(record) == len(self.committed) + len(self.pending)
            self.pending.append(record)

    @rule(text=st.text(max_size=50))
    def append_text(self, text):
        self.file.append(text)
        self.pending.append(text.encode("utf-8"))

    @rule(value=st.one_of(st.none(), st.binary(max_size=100)))
    def set_metadata(self, value):
        self.file.set_metadata(value)
        self.meta_pending = value

    @rule()
    def commit(self):
        self.file.commit()
        self.committed += self.pending
        self.pending = []
        self.meta = self.meta_pending

    @rule()
    def rollback(self):
        self.file.rollback()
        self.pending = []
        self.meta_pending = self.meta

    @rule()
    def reopen(self):
        self.file.close()
        self.file = RecordFile(self.path, "a")
        self.pending = []
        self.meta_pending = self.meta

    @precondition(lambda self: self.committed)
    @rule(data=st.data())
    def read_back(self, data):
        i = data.draw(st.integers(-len(self.committed), len(self.committed) - 1))
        with RecordFile(self.path) as reader:
            assert reader[i] == self.committed[i]
            assert list(reader) == self.committed
            assert reader.get_metadata() == self.meta

    @invariant()
    def writer_view(self):
        everything = self.committed + self.pending
        assert len(self.file) == len(everything)
        if everything:
            assert self.file[-1] == everything[-1]
        assert self.file.get_metadata() == self.meta_pending


RecordFileModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_record_file_model = RecordFileModel.TestCase
