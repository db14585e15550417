"""File-system primitives: atomic publication, modes, directory fsync, inter-process locks."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from klepto import _fs
from klepto._fs import (
    InterProcessLock,
    atomic_write,
    atomic_writer,
    fsync_dir,
    is_temp_name,
    makedirs,
    remove_stale_temps,
    write_all,
)
from klepto.errors import LockedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def temps(directory) -> list[str]:
    return [name for name in os.listdir(directory) if is_temp_name(name)]


def python(code: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "data.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert temps(tmp_path) == []


def test_failed_write_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "data.bin"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert temps(tmp_path) == []


def test_killed_writer_never_leaves_a_partial_file(tmp_path):
    """SIGKILL in the middle of big atomic writes: the target is always old or new, whole."""
    target = tmp_path / "big.bin"
    old = os.urandom(1 << 20)
    atomic_write(target, old)
    rnd = random.Random(3)
    for run in range(4):
        proc = python(
            f"""
            import os, sys
            from klepto._fs import atomic_writer
            print("go", flush=True)
            for i in range(1000):
                with atomic_writer({str(target)!r}) as handle:
                    for _ in range(64):
                        handle.write(bytes([i % 256]) * 65536)
            """
        )
        assert proc.stdout.readline() == "go\n"
        time.sleep(rnd.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        data = target.read_bytes()
        if data != old:
            assert len(data) == 64 * 65536 and data == bytes([data[0]]) * len(data), run
        leftovers = temps(tmp_path)  # a killed writer's temp file: recognised and removable
        assert remove_stale_temps(tmp_path) == len(leftovers) and temps(tmp_path) == []


def test_symlink_at_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    link = tmp_path / "store.pkl"
    link.symlink_to(victim)
    atomic_write(link, b"store data")
    assert not link.is_symlink() and link.read_bytes() == b"store data"
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == digest


def test_durable_write_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real(fd)))
    atomic_write(tmp_path / "d.bin", b"x", durable=True)
    assert any(stat.S_ISREG(m) for m in synced) and any(stat.S_ISDIR(m) for m in synced)


def test_write_all_survives_short_writes(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    fd = os.open(tmp_path / "short", os.O_WRONLY | os.O_CREAT)
    write_all(fd, b"0123456789" * 10)
    os.close(fd)
    assert (tmp_path / "short").read_bytes() == b"0123456789" * 10


# --- modes and directories -----------------------------------------------------------------------


def test_modes(tmp_path):
    old_umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "private", b"x")
        atomic_write(tmp_path / "shared", b"x", mode=0o644)
        made = makedirs(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "private").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "shared").st_mode) == 0o644
    assert made == tmp_path / "a" / "b" / "c" and made.is_absolute()
    for part in (made, made.parent, made.parent.parent):
        assert stat.S_IMODE(os.stat(part).st_mode) == 0o700
    assert makedirs(made) == made  # existing: left alone


def test_fsync_dir(tmp_path):
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


def test_remove_stale_temps_only_touches_klepto_temps(tmp_path):
    (tmp_path / (_fs.TEMP_PREFIX + "abc.tmp")).write_bytes(b"")
    (tmp_path / "keep.txt").write_bytes(b"")
    (tmp_path / (_fs.TEMP_PREFIX + "dir")).mkdir()
    (tmp_path / (_fs.TEMP_PREFIX + "link")).symlink_to(tmp_path / "keep.txt")
    assert remove_stale_temps(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["keep.txt", _fs.TEMP_PREFIX + "dir", _fs.TEMP_PREFIX + "link"]
    )
    assert remove_stale_temps(tmp_path / "missing") == 0


# --- locks ---------------------------------------------------------------------------------------


def test_lock_excludes_other_processes_and_is_released_when_the_holder_dies(tmp_path):
    path = tmp_path / "x.lock"
    for _ in range(3):
        holder = python(
            f"""
            import sys
            from klepto._fs import InterProcessLock
            lock = InterProcessLock({str(path)!r})
            lock.acquire()
            print("held", flush=True)
            sys.stdin.readline()
            """
        )
        assert holder.stdout.readline() == "held\n"
        lock = InterProcessLock(path)
        with pytest.raises(LockedError, match="locked by another"):
            lock.acquire(timeout=0.05)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
        holder.stdin.close()
        lock.acquire(timeout=1.0)  # the OS released the dead holder's lock
        assert lock.is_locked
        lock.release()
        assert not lock.is_locked
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_thread_local_lock_is_reentrant_per_thread(tmp_path):
    lock = InterProcessLock(tmp_path / "t.lock")
    with lock, lock:
        assert lock.is_locked
        failures = []

        def other_thread():
            try:
                lock.acquire(timeout=0.05)
                lock.release()
                failures.append("acquired a lock held by another thread")
            except LockedError:
                pass

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert failures == []
    assert not lock.is_locked


def test_object_owned_lock_can_be_released_by_another_thread(tmp_path):
    lock = InterProcessLock(tmp_path / "o.lock", thread_local=False)
    lock.acquire()
    thread = threading.Thread(target=lock.release)
    thread.start()
    thread.join()
    assert not lock.is_locked
    other = InterProcessLock(tmp_path / "o.lock")
    other.acquire(timeout=0)
    other.release()


def test_lock_pickles_unlocked(tmp_path):
    lock = InterProcessLock(tmp_path / "p.lock", timeout=3, thread_local=False)
    lock.acquire()
    clone = pickle.loads(pickle.dumps(lock))
    assert (clone.path, clone.timeout, clone.thread_local) == (lock.path, 3, False)
    assert not clone.is_locked
    lock.release()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_inherit_the_hold(tmp_path):
    lock = InterProcessLock(tmp_path / "f.lock")
    lock.acquire()
    pid = os.fork()
    if pid == 0:  # the child: the parent's hold is not ours, and it still excludes us
        code = 0
        try:
            if lock.is_locked:
                code = 2
            else:
                lock.acquire(timeout=0)
                code = 3
        except LockedError:
            code = 0
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert lock.is_locked
    lock.release()


def test_new_temp_files_are_private_distinct_and_never_follow_a_link(tmp_path, monkeypatch):
    made = [_fs.new_temp_file(str(tmp_path)) for _ in range(3)]
    for fd, _ in made:
        os.close(fd)
    paths = [path for _, path in made]
    assert len(set(paths)) == 3
    for path in paths:
        assert _fs.is_temp_name(os.path.basename(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # The next two names taken: one by a leftover file, one by a planted link.
    numbers = iter(range(10**6, 10**6 + 10))
    monkeypatch.setattr(_fs, "_temp_numbers", numbers)
    prefix = f"{_fs.TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}-"
    (tmp_path / f"{prefix}{10**6}.tmp").write_bytes(b"leftover")
    os.symlink(tmp_path / "target", tmp_path / f"{prefix}{10**6 + 1}.tmp")
    fd, path = _fs.new_temp_file(str(tmp_path))
    os.close(fd)
    assert path.endswith(f"{prefix}{10**6 + 2}.tmp")
    assert (tmp_path / f"{prefix}{10**6}.tmp").read_bytes() == b"leftover"
    assert not (tmp_path / "target").exists()
