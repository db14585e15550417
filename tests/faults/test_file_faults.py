"""file_archive under real faults: kill -9 of writers (A2, A3, A7, and during compaction),
concurrent writer and reader processes (C1, C2), a killed lock holder (C6), fork (C5), a
full disk (D1), injected I/O errors (D4) and a simulated power loss in durable mode (A6).

Every check counts outcomes; none depends on timing. ``-m full`` runs the campaign sizes
of docs/reliability (100 kill runs, 5 repetitions, N=32 writers).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from klepto import _fs
from klepto.archives import file_archive
from tests.faults import _file_worker as worker

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
KILL_OPS = 300


def spawn(*args: object, **popen: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "tests.faults._file_worker", *map(str, args)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, **popen)


def kill_after_acks(proc: subprocess.Popen, acks: int, delay: float) -> list[str]:
    """SIGKILL ``proc`` ``delay`` s after its ``acks``-th ack; every line it printed."""
    lines, seen = [], 0
    for raw in proc.stdout:
        lines.append(raw.decode().strip())
        seen += lines[-1].startswith("A ")
        if seen >= acks or lines[-1] == "END":
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    lines += proc.stdout.read().decode().splitlines()  # printed before the kill landed
    proc.wait()
    return lines


def acked(lines: list[str]) -> int:
    """Index of the last acknowledged operation (-1 if none)."""
    return max((int(line[2:]) for line in lines if line.startswith("A ")), default=-1)


def replay(operations: list[tuple[str, str]], upto: int, base: dict | None = None) -> dict:
    state = dict(base or {})
    for key, value in operations[: upto + 1]:
        state[key] = value
    return state


def check_after_kill(path: Path, before: dict, after: dict) -> list[str]:
    """Problems with the reopened archive, given the states before/after the in-flight step."""
    problems = []
    archive = file_archive(str(path), cached=False)
    found = archive.__asdict__()
    if len(archive) != len(found):
        problems.append(f"len() says {len(archive)}, {len(found)} entries listed")
    for key in set(found) - set(before) - set(after):
        problems.append(f"phantom key {key!r}")
    for key in set(before) | set(after):
        allowed = {before.get(key, "<absent>"), after.get(key, "<absent>")}
        if found.get(key, "<absent>") not in allowed:
            problems.append(f"{key!r}: {found.get(key, '<absent>')[:12]!r} not in old/new")
    archive["after-crash"] = "ok"
    if file_archive(str(path), cached=False)["after-crash"] != "ok":
        problems.append("the archive does not accept a write after the crash")
    return problems


def kill_runs(tmp_path: Path, mode: str, runs: int) -> tuple[list[str], int]:
    """Kill ``mode`` workers at random acks; the failures found and kills that landed early."""
    failures, landed = [], 0
    for seed in range(runs):
        rng = random.Random(seed)
        path = tmp_path / f"{mode}{seed}.pkl"
        operations = worker.ops(seed, KILL_OPS)
        points = worker.dump_points(seed, KILL_OPS)
        ack_count = len(points) if mode == "dump" else len(operations)
        delay = rng.uniform(0, 0.05) if mode == "compact" else rng.uniform(0, 0.003)
        lines = kill_after_acks(
            spawn(mode, path, seed, KILL_OPS), rng.randint(1, ack_count - 1), delay
        )
        last = acked(lines)
        landed += "END" not in lines and (mode != "compact" or lines[-1] == "COMPACTING")
        inflight_end = min(last + 1, KILL_OPS - 1)
        if mode == "dump":
            inflight_end = next((p for p in points if p > last), last)
        base = worker.prefill() if mode == "compact" else {}
        before = replay(operations, last, base)
        problems = check_after_kill(path, before, replay(operations, inflight_end, base))
        failures += [f"seed {seed}: {problem}" for problem in problems]
    return failures, landed


@pytest.mark.parametrize(
    "runs", [10, pytest.param(100, marks=[pytest.mark.full, pytest.mark.slow])]
)
def test_kill9_during_direct_writes(tmp_path, runs):
    failures, landed = kill_runs(tmp_path, "direct", runs)
    assert failures == []
    assert landed >= 1, "no kill landed while the writer was still writing"


@pytest.mark.parametrize("runs", [10, pytest.param(50, marks=[pytest.mark.full, pytest.mark.slow])])
def test_kill9_during_dump(tmp_path, runs):
    failures, landed = kill_runs(tmp_path, "dump", runs)
    assert failures == []
    assert landed >= 1


@pytest.mark.parametrize("runs", [6, pytest.param(50, marks=[pytest.mark.full, pytest.mark.slow])])
def test_kill9_during_compaction(tmp_path, runs):
    failures, landed = kill_runs(tmp_path, "compact", runs)
    assert failures == []
    assert landed >= 1, "no kill landed during a compaction"


@pytest.mark.parametrize("runs", [8, pytest.param(100, marks=[pytest.mark.full, pytest.mark.slow])])
def test_kill9_during_creation(tmp_path, runs):
    """A7: an archive killed while being created is absent or valid, never unopenable."""
    for seed in range(runs):
        path = tmp_path / f"create{seed}.pkl"
        proc = spawn("create", path)
        time.sleep(random.Random(seed).uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        lines = proc.stdout.read().decode().split("\n")
        proc.wait()
        if not path.exists():
            continue
        archive = file_archive(str(path), cached=False)
        acks = sum(line.startswith("A ") for line in lines)
        assert len(archive) >= acks
        assert all(archive[f"k{i}"] == i for i in range(acks))
        archive["new"] = 1
        assert archive["new"] == 1


def run_writers(path: Path, writers: int, keys: int, shared: int, dump_every: int) -> None:
    stop = path.parent / f"{path.name}.stop"
    file_archive(str(path), cached=False)  # created up front so that readers can open it
    readers = [spawn("reader", path, stop) for _ in range(2)]
    procs = [spawn("writer", path, w, keys, shared, dump_every) for w in range(writers)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    stop.touch()
    reports = [json.loads(r.communicate(timeout=60)[0]) for r in readers]
    assert [p.returncode for p in procs] == [0] * writers, outputs
    assert all(r.returncode == 0 for r in readers)
    for report in reports:
        assert report["errors"] == [] and report["rounds"] >= 1, report
        violations = (report["drops"], report["missing"], report["phantoms"], report["bad"])
        assert violations == (0, 0, 0, 0), report
    final = file_archive(str(path), cached=False).__asdict__()
    lost = [(w, i) for w in range(writers) for i in range(keys) if final.get((w, i)) != f"{w}:{i}"]
    assert lost == []
    for j in range(shared):
        writer_id = final[("shared", j)].split(":")[0]
        assert final[("shared", j)] == f"{writer_id}:shared{j}"
    assert len(final) == writers * keys + shared


@pytest.mark.parametrize("writers,keys", [(2, 200), (8, 100)])
def test_concurrent_writers_lose_nothing(tmp_path, writers, keys):
    run_writers(tmp_path / "c1.pkl", writers, keys, shared=5, dump_every=0)


@pytest.mark.parametrize("writers,keys", [(2, 100), (8, 50)])
def test_concurrent_dumps_merge(tmp_path, writers, keys):
    run_writers(tmp_path / "c2.pkl", writers, keys, shared=5, dump_every=10)


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.parametrize("dump_every", [0, 10])
@pytest.mark.parametrize("repetition", range(5))
def test_campaign_eight_writers(tmp_path, repetition, dump_every):
    run_writers(tmp_path / "c.pkl", 8, 200 if dump_every == 0 else 100, 5, dump_every)


@pytest.mark.full
@pytest.mark.slow
def test_campaign_thirty_two_writers(tmp_path):
    run_writers(tmp_path / "c32.pkl", 32, 100, 5, 0)


@pytest.mark.parametrize("runs", [3, pytest.param(20, marks=[pytest.mark.full, pytest.mark.slow])])
def test_lock_of_a_killed_writer_is_released(tmp_path, runs):
    """C6: a writer killed inside a transaction (holding the lock) blocks nobody after."""
    path = tmp_path / "held.pkl"
    archive = file_archive(str(path), cached=False)
    for run in range(runs):
        proc = spawn("hold", path)
        assert proc.stdout.readline().decode().strip() == "HOLDING"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        archive[run] = run
        assert time.monotonic() - started < 1.0
        assert "held" not in archive  # the killed transaction left nothing behind
    assert archive.__asdict__() == {run: run for run in range(runs)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_archive_used_on_both_sides_of_fork(tmp_path):
    """C5: parent and child both write through the object opened before the fork."""
    archive = file_archive(str(tmp_path / "fork.pkl"), cached=False)
    archive["before"] = 0
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            for i in range(50):
                archive[("child", i)] = i
            status = 0 if archive["before"] == 0 else 2
        finally:
            os._exit(status)
    for i in range(50):
        archive[("parent", i)] = i
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert len(archive) == 101
    assert archive[("child", 49)] == 49 and archive[("parent", 49)] == 49


# --- environment ----------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(size: str = "2m"):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="klepto-d1-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        gc.collect()  # archives dropped by a failed assertion still hold their files
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


@pytest.mark.parametrize("value_size", [1000, 7000, 40_000, 150_000, 600_000])
def test_disk_full_raises_and_keeps_data(value_size):
    """D1: the write that hits ENOSPC raises; acked data survives; once space is freed,
    writes and compaction work again."""
    with small_tmpfs() as mount:
        ballast = mount / "ballast"
        ballast.write_bytes(bytes(800_000))
        archive = file_archive(str(mount / "memo.pkl"), cached=False)
        try:
            written = {}
            with pytest.raises(OSError) as caught:
                for i in range(10_000):
                    archive[i] = os.urandom(value_size)
                    written[i] = archive[i]
            assert caught.value.errno == errno.ENOSPC
            assert archive.__asdict__() == written
            assert file_archive(str(mount / "memo.pkl"), cached=False).__asdict__() == written
            assert not [n for n in os.listdir(mount) if n.startswith(".klepto-tmp")]
            ballast.unlink()  # space is freed
            archive["after"] = written["after"] = b"x" * min(value_size, 100_000)
            with archive.transaction():
                for key in list(written)[: len(written) * 9 // 10]:
                    del archive[key]  # the file only grows (a record per delete) ...
                    del written[key]
            archive.compact()  # ... until compaction copies what is left into a new file
            assert os.path.getsize(mount / "memo.pkl") < 1_000_000
            assert file_archive(str(mount / "memo.pkl"), cached=False).__asdict__() == written
        finally:
            archive.close()


class FailingWrites:
    """Makes the ``n``-th positional write, ``fdatasync``, ``fsync`` or ``os.replace`` raise EIO."""

    def __init__(self, monkeypatch, n: int) -> None:
        self.calls = 0
        self.n = n
        monkeypatch.setattr(_fs, "_pwrite_once", self._wrap(_fs._pwrite_once))
        for name in ("fdatasync", "fsync", "replace"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real):
        def call(*args, **kwds):
            self.calls += 1
            if self.calls == self.n:
                raise OSError(errno.EIO, "injected I/O error")
            return real(*args, **kwds)

        return call


def _run(archive, operation: str) -> None:
    if operation == "set":
        archive["x"] = 1
    elif operation == "update":
        archive.update({i: -i for i in range(30, 60)})
    else:
        archive.compact()


@pytest.mark.parametrize("operation", ["set", "update", "compact"])
def test_io_errors_propagate_and_leave_a_consistent_archive(tmp_path, monkeypatch, operation):
    """D4: an I/O error at each system call in turn: the operation raises it (or, where
    the failed call only saves the index, completes without it), the archive is as before
    or as after, and the next write works."""
    for n in range(1, 200):
        path = str(tmp_path / f"{operation}{n}.pkl")
        archive = file_archive(path, cached=False, durable=True)
        archive.update({i: i for i in range(20)})
        del archive[0]
        before = archive.__asdict__()
        after = {**before, **({"x": 1} if operation == "set" else {})}
        if operation == "update":
            after.update({i: -i for i in range(30, 60)})
        with monkeypatch.context() as patch:
            injected = FailingWrites(patch, n)
            try:
                _run(archive, operation)
                raised = False
            except OSError as exc:
                assert exc.errno == errno.EIO
                raised = True
        reopened = file_archive(path, cached=False).__asdict__()
        assert reopened == after if not raised else reopened in (before, after), n
        assert archive.__asdict__() == reopened
        archive["next"] = n
        assert file_archive(path, cached=False)["next"] == n
        archive.close()
        if injected.calls < n:
            return  # a clean run: every call has failed once
    pytest.fail("the operation never completed without an injected error")


def test_power_loss_keeps_every_durable_commit(tmp_path, monkeypatch):
    """A6 (LevelDB style): cut the file back to what was fsynced; acked commits survive."""
    synced: dict[int, int] = {}
    real_sync = os.fdatasync

    def tracking_sync(fd):
        real_sync(fd)
        info = os.fstat(fd)
        synced[info.st_ino] = info.st_size

    monkeypatch.setattr(os, "fdatasync", tracking_sync)
    path = tmp_path / "durable.pkl"
    rng = random.Random(5)
    for trial in range(20):
        archive = file_archive(str(path), cached=False, durable=True)
        expected = archive.__asdict__()
        for i in range(rng.randint(1, 30)):
            key = f"{trial}-{i % 7}"
            archive[key] = expected[key] = "v" * rng.randint(1, 3000)
        archive.close()
        inode = os.stat(path).st_ino
        os.truncate(path, synced[inode])  # the power cut: what was never fsynced is gone
        assert file_archive(str(path), cached=False).__asdict__() == expected
