"""Checkpoint + incremental log + recover (klepto.logs.checkpoint): API, every guarantee,
and a regression test for each bug of the classic design (trax 1.2 / 2.0), named after it.

Crash cases that need a dead process use a real child process that kills itself with
SIGKILL at a chosen point (deterministic); the random-time campaign is in
tests/faults/test_checkpoint_faults.py.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from klepto._canonical import stable_hash
from klepto.archives import dict_archive, dir_archive, file_archive
from klepto.errors import (
    ArchiveClosedError,
    CorruptArchiveError,
    CorruptionError,
    LockedError,
    UnsafeDataError,
)
from klepto.logs import NoCheckpointError, SimpleTransactional, Transactional
from klepto.logs._cptstore import CheckpointStore
from klepto.records import RecordFile
from tests._io_inject import Inject

REPO = Path(__file__).resolve().parents[1]


def fold(state, value):
    return [*state, value]


def append(state, value):
    state.append(value)


KINDS = ["file", "dir", "dict"]


class Storage:
    """Where one test's computation lives: the default (file archive + segment log), a
    dir_archive + segment log, or a dict_archive holding the log too."""

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.tmp_path = tmp_path
        self.memory = dict_archive(cached=False)

    def open(self, **options) -> Transactional:
        if self.kind == "file":
            return Transactional(str(self.tmp_path / "run"), **options)
        if self.kind == "dir":
            archive = dir_archive(str(self.tmp_path / "cpt"), cached=False, serializer="safe")
            return Transactional(archive, str(self.tmp_path / "log"), **options)
        return Transactional(self.memory, **options)


@pytest.fixture(params=KINDS)
def storage(request, tmp_path):
    return Storage(request.param, tmp_path)


def run_child(code: str, cwd) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (it may kill itself); its completed process."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def killed(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == -signal.SIGKILL


# --- the API ------------------------------------------------------------------------------
def test_log_numbers_entries_and_checkpoint_returns_the_seq_it_covers(storage):
    with storage.open() as t:
        assert t.seq == 0
        assert [t.log(v) for v in "abc"] == [1, 2, 3]
        assert t.checkpoint(["a", "b", "c"]) == 3
        assert t.log("d") == 4 and t.seq == 4
        assert t.recover(apply=fold) == ["a", "b", "c", "d"]
        assert t.last_recovery.checkpoint_seq == 3 and t.last_recovery.applied == 1


def test_recover_creates_the_first_state_once(storage):
    calls = []

    def create():
        calls.append(1)
        return []

    with storage.open() as t:
        assert t.recover(create=create, apply=fold) == []
        assert t.last_recovery.created
        t.log(1)
    with storage.open() as t:
        assert t.recover(create=create, apply=fold) == [1]
        assert not t.last_recovery.created
    assert len(calls) == 1


def test_recover_without_any_checkpoint_or_create_raises(storage):
    with storage.open() as t:
        with pytest.raises(NoCheckpointError):
            t.recover()
        with pytest.raises(NoCheckpointError):
            t.recover(append)
        with pytest.raises(FileNotFoundError):  # trax 1.2 raised IOError here
            t.recover(pickle.load, lambda s, f: s)


def test_default_apply_replaces_the_state(storage):
    with storage.open() as t:
        t.recover(create=lambda: 0)
        t.log(5)
        t.log(7)
        assert t.recover() == 7


def test_in_place_handler_and_stream_handlers(storage):
    def read_pickles(state, stream):
        while True:
            try:
                state.append(pickle.load(stream))
            except EOFError:
                return state

    with storage.open(serializer="pickle") as t:
        t.checkpoint([0])
        t.log(1)
        t.log(2)
        assert t.recover(lambda state, value: state.append(value) or "ignored") == [0, 1, 2]
        assert t.recover(pickle.load, read_pickles) == [0, 1, 2]
        with pytest.raises(TypeError):
            t.recover(append, create=list)


def test_round_trip_many_logs_and_checkpoints(storage):
    """trax's own test: 1000 logs with a checkpoint every 50 recover exactly."""
    with storage.open() as t:
        state = t.recover(create=list, apply=fold)
        for i in range(1000):
            t.log(i)
            state = fold(state, i)
            if i % 50 == 49:
                t.checkpoint(state)
    with storage.open() as t:
        assert t.recover(create=list, apply=fold) == list(range(1000))
        assert t.last_recovery.applied == 0


def test_path_layout_and_closing(tmp_path):
    t = Transactional(str(tmp_path / "run"))
    t.checkpoint({"a": 1})
    t.log(2)
    assert isinstance(t.archive, file_archive)
    assert os.path.isfile(tmp_path / "run") and os.path.isdir(tmp_path / "run.log")
    assert t.log_location == str(tmp_path / "run.log")
    t.close()
    t.close()
    assert t.closed
    with pytest.raises(ArchiveClosedError):
        t.log(1)


def test_names_separate_computations(tmp_path):
    archive = dict_archive(cached=False)
    with Transactional(archive, name="a") as a, Transactional(archive, name="b") as b:
        a.log(1)
        b.log(2)
        b.log(3)
        assert a.recover(create=list, apply=fold) == [1]
        assert b.recover(create=list, apply=fold) == [2, 3]
    with pytest.raises(ValueError, match="name"):
        Transactional(archive, name="../x")


def test_simple_transactional_defaults(in_tmpdir):
    with SimpleTransactional() as t:
        assert (t.cpt_path, t.log_path) == ("transactional.cpt", "transactional.log")
        t.checkpoint([1])
        t.log(2)
        assert t.recover(append) == [1, 2]
    assert os.path.exists("transactional.cpt") and os.path.isdir("transactional.log")


def test_trax_file_name_options_are_honoured(in_tmpdir):
    """trax bug #2: ``**kws`` passed as ``*kws`` ignored the file-name options."""
    with SimpleTransactional(checkpoint="a.cpt", log="b.log", pickleprotocol=2) as t:
        t.checkpoint({})
        t.log(1)
    assert os.path.exists("a.cpt") and os.path.isdir("b.log")
    assert not os.path.exists("transactional.cpt")


# --- trax regressions ---------------------------------------------------------------------
def test_trax_lost_logs_on_crash(tmp_path):
    """trax 1.2: three log() calls then a kill left a 0-byte log (writes sat in a buffer)."""
    result = run_child(
        """
        import os, signal
        from klepto.logs import SimpleTransactional
        t = SimpleTransactional()
        t.checkpoint([])
        for value in (1, 2, 3):
            t.log(value)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    assert killed(result), result.stderr
    with SimpleTransactional(tmp_path / "transactional.cpt", tmp_path / "transactional.log") as t:
        assert t.recover(append) == [1, 2, 3]


def test_trax_double_apply_after_a_checkpoint_and_a_crash(tmp_path):
    """trax 1.2: checkpoint [0,1,2,3], crash before the next log(): [0,1,2,3,1,2,3]."""
    result = run_child(
        """
        import os, signal
        from klepto.logs import SimpleTransactional
        t = SimpleTransactional()
        state = []
        t.checkpoint(state)
        for value in (0, 1, 2, 3):
            t.log(value)
            state.append(value)
        t.checkpoint(state)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    assert killed(result), result.stderr
    with SimpleTransactional(tmp_path / "transactional.cpt", tmp_path / "transactional.log") as t:
        assert t.recover(append) == [0, 1, 2, 3]
        assert t.last_recovery.applied == 0


def test_trax_data_loss_after_a_restart(storage):
    """trax 1.2: process 2 recovers [0,1,2,3], logs 4; process 3 recovered [0,4]."""
    with storage.open() as first:
        first.checkpoint([0])
        for value in (1, 2, 3):
            first.log(value)
    with storage.open() as second:
        assert second.recover(apply=fold) == [0, 1, 2, 3]
        second.log(4)
    with storage.open() as third:
        assert third.recover(apply=fold) == [0, 1, 2, 3, 4]


def test_trax_recover_needs_no_log_file(storage):
    """trax bug #1: recover failed when the log file did not exist yet."""
    with storage.open() as t:
        t.checkpoint([1])
    with storage.open() as t:
        assert t.recover(append) == [1]


def test_trax2_first_checkpoint_without_a_log_directory(tmp_path):
    """trax 2.0: the README example failed on its first call (removing a missing log dir)."""
    with Transactional(str(tmp_path / "hello")) as t:
        assert t.recover(create=lambda: "hello", apply=lambda s, v: s + v) == "hello"
        t.checkpoint("hello world")
    with Transactional(str(tmp_path / "hello")) as t:
        assert t.recover(create=lambda: "x", apply=lambda s, v: s + v) == "hello world"


def test_trax2_logs_of_a_previous_process_are_replayed(storage):
    """trax 2.0: the log counter lived in memory, so a new process ignored (and then
    overwrote) the entries of the previous one."""
    with storage.open() as first:
        first.recover(create=list, apply=fold)
        for value in (0, 1, 2):
            first.log(value)
    with storage.open() as second:
        assert second.recover(create=list, apply=fold) == [0, 1, 2]
        assert second.log(3) == 4  # numbering continues: nothing is overwritten
    with storage.open() as third:
        assert third.recover(create=list, apply=fold) == [0, 1, 2, 3]


def test_trax2_entries_logged_before_the_first_checkpoint(storage):
    with storage.open() as t:
        t.log("a")
        t.log("b")
    with storage.open() as t:
        assert t.recover(create=list, apply=fold) == ["a", "b"]
        assert t.last_recovery.created and t.last_recovery.applied == 2
    with storage.open() as t:
        assert t.recover(create=list, apply=fold) == ["a", "b"]


def test_trax_checkpoint_written_in_place_is_atomic_here(tmp_path, monkeypatch):
    """trax truncated the checkpoint file and wrote it in place: a crash while pickling
    left no checkpoint at all. Here a checkpoint that fails to be stored leaves the
    previous one and the whole log."""
    storage = Storage("dir", tmp_path)
    with storage.open() as t:
        t.checkpoint([0])
        t.log(1)

        def broken(self, *args):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(CheckpointStore, "write", broken)
        with pytest.raises(OSError):
            t.checkpoint([0, 1])
        monkeypatch.undo()
        t.log(2)
    with storage.open() as t:
        assert t.recover(apply=fold) == [0, 1, 2]


def test_trax_unpicklable_value_changes_nothing(storage):
    with storage.open() as t:
        t.checkpoint([])
        with pytest.raises(pickle.PicklingError):
            t.log(_Unpicklable())
        assert t.seq == 0
        t.log(1)
        assert t.recover(apply=fold) == [1]


class _Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("cannot pickle this")


# --- durability and numbering on disk ------------------------------------------------------
def test_a_logged_value_is_visible_to_another_reader_at_once(tmp_path):
    with Transactional(str(tmp_path / "run")) as t:
        t.log("x")
        segments = sorted((tmp_path / "run.log").glob("*.seg"))
        with RecordFile(segments[-1]) as reader:  # a separate reader sees the commit
            assert len(reader) == 1
            assert struct.unpack(">Q", reader[0][:8]) == (1,)


def test_durable_mode_syncs_before_log_returns(tmp_path, monkeypatch):
    syncs = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name, None)
        if real is not None:
            monkeypatch.setattr(os, name, lambda fd, real=real: syncs.append(fd) or real(fd))
    with Transactional(str(tmp_path / "run"), durability="durable") as t:
        t.checkpoint([])
        t.log(1)
        before = len(syncs)
        t.log(2)
        assert len(syncs) > before
        before = len(syncs)
        t.checkpoint([1, 2])
        assert len(syncs) > before


def test_checkpoint_records_the_last_covered_seq(tmp_path):
    archive = dict_archive(cached=False)
    with Transactional(archive, name="n") as t:
        t.log("a")
        t.log("b")
        t.checkpoint(["a", "b"])
        record = CheckpointStore(archive, "n").read(1)
    assert (record.gen, record.seq) == (1, 2)
    assert archive[("klepto.cpt", "n", "head")] == 1


def test_segments_are_dropped_only_after_the_covering_checkpoint_is_stored(tmp_path, monkeypatch):
    events = []
    real_write, real_unlink = CheckpointStore.write, os.unlink
    monkeypatch.setattr(
        CheckpointStore, "write", lambda self, *a: events.append("write") or real_write(self, *a)
    )
    monkeypatch.setattr(
        os,
        "unlink",
        lambda p, *a, **k: events.append(("unlink", str(p))) or real_unlink(p, *a, **k),
    )
    log_dir = tmp_path / "run.log"
    with Transactional(str(tmp_path / "run"), keep=1) as t:
        t.checkpoint([])
        for i in range(3):
            t.log(i)
        events.clear()
        t.checkpoint([0, 1, 2])
        dropped = [e for e in events if isinstance(e, tuple) and e[1].endswith(".seg")]
        assert dropped and events.index("write") < events.index(dropped[0])
        assert not list(log_dir.glob("*.seg"))
        t.log(3)
    assert [p.name for p in log_dir.glob("*.seg")] == ["default.00000000000000000004.seg"]


def test_keep_bounds_the_checkpoints(storage):
    with storage.open(keep=3) as t:
        for i in range(6):
            t.log(i)
            t.checkpoint(list(range(i + 1)))
        store = t._store
        assert store.generations(store.latest()) == [6, 5, 4]
    with pytest.raises(ValueError, match="keep"):
        storage.open(keep=0)


def test_recovery_is_idempotent_and_writes_nothing(tmp_path):
    storage = Storage("dir", tmp_path)
    with storage.open() as t:
        t.recover(create=list, apply=fold)
        for i in range(5):
            t.log(i)
        t.checkpoint(list(range(5)))
        t.log(5)

    def snapshot():
        return sorted(
            (str(p.relative_to(tmp_path)), p.stat().st_mtime_ns, p.stat().st_size)
            for p in tmp_path.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")
        )

    before = snapshot()
    with storage.open() as t:
        states = [t.recover(create=list, apply=fold) for _ in range(3)]
    assert states == [list(range(6))] * 3
    assert snapshot() == before


# --- one writer ---------------------------------------------------------------------------
def test_a_second_writer_on_a_segment_log_is_refused(tmp_path):
    with Transactional(str(tmp_path / "run")) as first:
        first.checkpoint([])
        first.log(1)
        second = Transactional(str(tmp_path / "run"))
        with pytest.raises(LockedError):
            second.log(2)
        assert second.recover(create=list, apply=fold) == [1]  # reading needs no lock
        second.close()
    with Transactional(str(tmp_path / "run")) as third:
        assert third.log(2) == 2


def test_a_second_writer_on_an_archive_log_is_detected():
    archive = dict_archive(cached=False)
    first, second = Transactional(archive), Transactional(archive)
    assert first.log("a") == 1
    assert second.seq == 1
    first.log("b")
    with pytest.raises(LockedError, match="another writer"):
        second.log("c")


# --- B4: damaged checkpoints --------------------------------------------------------------
def _three_checkpoints(storage, **options):
    with storage.open(**options) as t:
        state = t.recover(create=list, apply=fold)
        for i in range(9):
            t.log(i)
            state = fold(state, i)
            if i % 3 == 2:
                t.checkpoint(state)
        t.log(9)
        return t._store.latest()


def _entry_file(tmp_path, gen):
    return tmp_path / "cpt" / ("K_" + stable_hash(("klepto.cpt", "default", "gen", gen)))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_newest_checkpoint_falls_back_and_says_so(tmp_path, caplog, damage):
    storage = Storage("dir", tmp_path)
    newest = _three_checkpoints(storage)
    entry = _entry_file(tmp_path, newest)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) - 7 :]
    entry.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="klepto.logs.checkpoint"), storage.open() as t:
        assert t.recover(create=list, apply=fold) == list(range(10))
        assert t.last_recovery.damaged == (newest,)
        assert t.last_recovery.checkpoint == newest - 1
        assert t.last_recovery.applied == 4  # seq 7..10 replayed from the log
        t.log(10)
        t.checkpoint(list(range(11)))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("damaged" in r.getMessage() for r in warnings)
    with storage.open() as t:
        assert t.recover(create=list, apply=fold) == list(range(11))


def test_damaged_checkpoint_raises_without_fallback(tmp_path):
    storage = Storage("dir", tmp_path)
    newest = _three_checkpoints(storage)
    entry = _entry_file(tmp_path, newest)
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0x10
    entry.write_bytes(bytes(data))
    with storage.open(fallback=False) as t, pytest.raises(CorruptionError):
        t.recover(create=list, apply=fold)


def test_every_checkpoint_damaged_raises(tmp_path):
    storage = Storage("dir", tmp_path)
    newest = _three_checkpoints(storage)
    for gen in (newest, newest - 1):
        entry = _entry_file(tmp_path, gen)
        entry.write_bytes(entry.read_bytes()[:-5])
    with storage.open() as t, pytest.raises(CorruptArchiveError, match="every checkpoint"):
        t.recover(create=list, apply=fold)


def test_a_forged_checkpoint_is_never_loaded(tmp_path, caplog):
    """A signed computation: a checkpoint replaced by an unsigned (attacker's) pickle is
    damaged, never unpickled; recovery falls back."""
    archive = dict_archive(cached=False)
    storage = Storage("dict", tmp_path)
    storage.memory = archive
    newest = _three_checkpoints(storage, key="secret", serializer="pickle")
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Marker(str(marker)))
    from klepto.integrity import seal

    key = ("klepto.cpt", "default", "gen", newest)
    archive[key] = dict(archive[key], state=seal(payload))
    with caplog.at_level(logging.WARNING), storage.open(key="secret", serializer="pickle") as t:
        assert t.recover(create=list, apply=fold) == list(range(10))
        assert t.last_recovery.damaged == (newest,)
    assert not marker.exists()


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_safe_mode_never_unpickles(tmp_path):
    with pytest.raises(UnsafeDataError):
        Transactional(dict_archive(cached=False), serializer="pickle", safe=True)
    archive = dict_archive(cached=False)
    with Transactional(archive, serializer="safe", safe=True) as t:
        t.checkpoint({"w": (1.5, b"x")})
        t.log({"step": 1})
        assert t.recover(apply=lambda s, v: {**s, **v}) == {"w": (1.5, b"x"), "step": 1}
    marker = tmp_path / "PWNED"
    from klepto.integrity import seal

    key = ("klepto.cpt", "default", "gen", 1)
    archive[key] = dict(archive[key], state=seal(pickle.dumps(_Marker(str(marker)))))
    with Transactional(archive, serializer="safe", safe=True) as t, pytest.raises(ValueError):
        t.recover(apply=fold)
    assert not marker.exists()


def test_file_archive_damage_never_gives_a_wrong_state(tmp_path):
    """Flip bytes all over the default checkpoint file: recovery gives the right state
    (possibly from an older checkpoint) or raises; it never loads a damaged one."""
    storage = Storage("file", tmp_path)
    _three_checkpoints(storage)
    path = tmp_path / "run"
    original = path.read_bytes()
    outcomes = {"right": 0, "raised": 0}
    for offset in range(4096, len(original), max(1, (len(original) - 4096) // 40)):
        data = bytearray(original)
        data[offset] ^= 0x20
        path.write_bytes(bytes(data))
        try:
            with storage.open() as t:
                assert t.recover(create=list, apply=fold) == list(range(10))
            outcomes["right"] += 1
        except CorruptionError:
            outcomes["raised"] += 1
    assert sum(outcomes.values()) >= 40


def test_file_archive_truncated_tail_recovers_from_an_older_checkpoint(tmp_path):
    storage = Storage("file", tmp_path)
    _three_checkpoints(storage)
    path = tmp_path / "run"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with storage.open() as t:
        assert t.recover(create=list, apply=fold) == list(range(10))


# --- across hosts: PostgreSQL -------------------------------------------------------------
@pytest.mark.services
def test_a_job_resumed_on_another_host_recovers_the_same_state(postgres_url, unique_name, tmp_path):
    """Checkpoints and log entries are rows of one PostgreSQL table: a job killed on one
    "host" (a process in its own directory) resumes on another (a process in another
    directory, sharing nothing but the database)."""
    url = f"{postgres_url}?table={unique_name}"
    program = f"""
        import json, os, signal, sys
        from klepto.archives import sqltable_archive
        from klepto.logs import Transactional
        t = Transactional(sqltable_archive({url!r}, cached=False), name="job")
        state = t.recover(create=list, apply=lambda s, v: s + [v])
        start = len(state)
        for i in range(start, start + int(sys.argv[1])):
            t.log(i)
            state = state + [i]
            if i % 4 == 3:
                t.checkpoint(state)
        print(json.dumps(state), flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        t.close()
    """
    hosts = [tmp_path / "host-a", tmp_path / "host-b", tmp_path / "host-c"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    states = []
    for host, (count, end) in zip(hosts, [(10, "kill"), (5, "close"), (0, "close")]):
        host.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(program), str(count), end],
            check=False,
            cwd=host,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.stdout, result.stderr
        states.append(json.loads(result.stdout))
        assert os.listdir(host) == []  # nothing of the job lives on the host
    assert states == [list(range(10)), list(range(15)), list(range(15))]
    from klepto.archives import sqltable_archive

    sqltable_archive(url, cached=False).__drop__()


@pytest.mark.parametrize("operation", ["log", "checkpoint"])
def test_io_errors_propagate_and_leave_a_recoverable_computation(tmp_path, monkeypatch, operation):
    """D4: an EIO at the n-th write of one log() or checkpoint(), for every n: the error
    propagates, the computation recovers to the state before or after it, and the next
    operations work."""
    for n in range(1, 60):
        root = tmp_path / f"io{n}"
        with Transactional(str(root)) as t:
            state = t.recover(create=list, apply=fold)
            for i in range(5):
                t.log(i)
                state = fold(state, i)
            t.checkpoint(state)
            t.log(5)
            state = fold(state, 5)
            with monkeypatch.context() as patch:
                injected = Inject(patch, n)
                try:
                    if operation == "log":
                        t.log(6)
                        state = fold(state, 6)
                    else:
                        t.checkpoint(state)
                except OSError as exc:
                    assert "injected" in str(exc)
            t.log("next")  # the same object goes on
        with Transactional(str(root)) as again:
            recovered = again.recover(create=list, apply=fold)
            assert recovered in ([*state, "next"], [*state, 6, "next"])
            again.log("more")
            again.checkpoint([*recovered, "more"])
        if not injected.fired:
            break
    # A log entry is one sealed record (one write); a checkpoint writes several times.
    assert n >= (2 if operation == "log" else 3), "the injection never reached the writes"
