"""The campaign items that apply to every store, run through one adapter per store
(tests/faults/_stores.py): kill -9 during creation (A7), power loss in durable mode (A6),
fork (C5), stale locks (C6), a full disk (D1), permission denied (D2), file modes (D3).

Stores: record file, file / directory / SQLite archives, checkpoint log, operation store,
branching log. Every assertion is a count of lost, wrong or phantom entries.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from klepto.errors import KleptoError
from tests.faults._harness import (
    Ext4Image,
    acked,
    as_user,
    kill_after,
    kill_after_acks,
    run_in_child,
    small_tmpfs,
    spawn,
)
from tests.faults._stores import ADAPTERS, NAMES, location, value

pytestmark = pytest.mark.faults

FULL = [pytest.mark.full, pytest.mark.slow]


def runs_params(default: int, full: int) -> list:
    return [default, pytest.param(full, marks=FULL)]


def present(where: str) -> bool:
    return os.path.lexists(where)


def expected(seed: int, count: int) -> dict[int, str]:
    return {i: value(seed, i) for i in range(count)}


def check_prefix(name: str, where: str, seed: int, acks: int, problems: list, tag: str) -> None:
    """Every acked write is there, at most the in-flight one more, nothing else."""
    try:
        found = ADAPTERS[name].state(where)
    except Exception as exc:  # an unopenable store is exactly what the item forbids
        problems.append(f"{tag}: reopening raised {type(exc).__name__}: {exc}")
        return
    allowed = (expected(seed, acks), expected(seed, acks + 1))
    if found not in allowed:
        problems.append(f"{tag}: {len(found)} entries, {acks} acked")


# --- A7: kill -9 during creation --------------------------------------------------------------
@pytest.mark.parametrize("runs", runs_params(2, 100))
@pytest.mark.parametrize("name", NAMES)
def test_kill9_during_creation(tmp_path, campaign, name, runs):
    """A7: killed while creating the store and making its first writes, the store is absent
    or opens with every acked write, and accepts a new one."""
    adapter = ADAPTERS[name]
    problems = []
    for seed in range(runs):
        where = location(name, tmp_path / f"run{seed}")
        os.makedirs(os.path.dirname(where))
        proc = spawn("_store_worker", "write", name, where, seed, 3, 0)
        lines = kill_after(proc, random.Random(seed).uniform(0.1, 0.9))
        if not present(where):
            continue
        acks = acked(lines) + 1
        check_prefix(name, where, seed, acks, problems, f"seed {seed}")
        try:
            handle = adapter.open(where)
            adapter.put(handle, 99, "after")
            adapter.close(handle)
            if adapter.state(where).get(99) != "after":
                problems.append(f"seed {seed}: the write after the crash is missing")
        except Exception as exc:  # a store that refuses writes after a crash fails the item
            problems.append(f"seed {seed}: writing after the crash: {type(exc).__name__}: {exc}")
    campaign.record("A7", name, runs, problems)
    assert problems == []


# --- A6: power loss in durable mode -----------------------------------------------------------
@pytest.fixture(scope="module")
def ext4(tmp_path_factory):
    image = Ext4Image(tmp_path_factory.mktemp("a6"))
    yield image
    image.close()


def power_loss_run(ext4: Ext4Image, name: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    folder = ext4.mount / f"{name}{seed}"
    folder.mkdir()
    where = location(name, folder)
    subprocess.run(["sync", "-f", str(ext4.mount)], check=True)  # nothing dirty from before
    proc = spawn("_store_worker", "write", name, where, seed, 10_000, 1)
    lines = kill_after_acks(proc, rng.randint(1, 40), rng.uniform(0, 0.003))
    acks = acked(lines) + 1
    problems: list[str] = []
    with ext4.crash_copy() as crashed:
        copy = location(name, crashed / folder.name)
        if acks == 0 and not present(copy):
            return problems
        check_prefix(name, copy, seed, acks, problems, f"seed {seed}")
    shutil.rmtree(folder)
    return problems


@pytest.mark.parametrize("runs", runs_params(3, 50))
@pytest.mark.parametrize("name", NAMES)
def test_power_loss_keeps_every_durable_commit(ext4, campaign, name, runs):
    """A6: a copy of the disk image taken right after the writer was killed (only what
    the kernel wrote back) holds every write acknowledged in durable mode."""
    problems = []
    for seed in range(runs):
        problems += power_loss_run(ext4, name, seed)
    campaign.record("A6", name, runs, problems)
    assert problems == []


# --- C5: fork ---------------------------------------------------------------------------------
CLEAR_ERROR = 3


def _child_writes(name: str, handle, count: int) -> int:
    adapter = ADAPTERS[name]
    try:
        for i in range(count):
            adapter.put(handle, 1000 + i, f"child{i}")
    except KleptoError:
        return CLEAR_ERROR  # refused in the child: allowed, if it is klepto's clear error
    return 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("name", NAMES)
def test_store_used_on_both_sides_of_fork(tmp_path, campaign, name):
    """C5: open, fork, write in the child and in the parent: the child works or gets a
    clear klepto error, nothing deadlocks, and the store holds what each side acked."""
    adapter = ADAPTERS[name]
    where = location(name, tmp_path)
    handle = adapter.open(where)
    for i in range(5):
        adapter.put(handle, i, f"before{i}")
    problems = []
    result: list[int] = []
    child = threading.Thread(
        target=lambda: result.append(
            run_in_child(lambda: _child_writes(name, handle, 20), timeout=60)
        )
    )
    child.start()  # the child runs while the parent writes too
    for i in range(20):
        adapter.put(handle, 2000 + i, f"parent{i}")
    child.join()
    status = result[0]
    if status not in (0, CLEAR_ERROR):
        problems.append(f"child exit status {status} (-1: deadlock)")
    adapter.close(handle)
    want = {i: f"before{i}" for i in range(5)} | {2000 + i: f"parent{i}" for i in range(20)}
    if status == 0:
        want |= {1000 + i: f"child{i}" for i in range(20)}
    try:
        found = adapter.state(where)
        if found != want:
            problems.append(f"{len(found)} entries after the fork, {len(want)} expected")
    except Exception as exc:  # corruption is what the item forbids
        problems.append(f"reopening raised {type(exc).__name__}: {exc}")
    campaign.record("C5", name, 1, problems)
    assert problems == []


# --- C6: stale locks --------------------------------------------------------------------------
LOCKS = [
    ("record", "writer"),
    ("oplog", "writer"),
    ("checkpoint", "writer"),
    ("file", "key"),
    ("dir", "key"),
    ("sqlite", "key"),
]


def _take_again(name: str, where: str, kind: str) -> None:
    """Take the lock a killed process held (a write, or ``archive.lock``)."""
    adapter = ADAPTERS[name]
    if kind == "key":
        archive = adapter.open(where)
        with archive.lock("the-key"):
            pass
        archive.close()
        return
    if name == "checkpoint":
        from klepto.logs import Transactional

        with Transactional(where, lock_timeout=1.0) as t:
            t.log((1, "again"))
        return
    handle = adapter.open(where)
    adapter.put(handle, 1, "again")
    adapter.close(handle)


@pytest.mark.parametrize("runs", runs_params(3, 20))
@pytest.mark.parametrize("name,kind", LOCKS, ids=[f"{n}-{k}" for n, k in LOCKS])
def test_stale_lock_of_a_killed_holder_is_recovered(tmp_path, campaign, name, kind, runs):
    """C6: a process killed while holding a lock blocks nobody for more than 1 s, and no
    lock file needs deleting by hand."""
    where = location(name, tmp_path)
    adapter = ADAPTERS[name]
    adapter.close(adapter.open(where))
    problems = []
    for run in range(runs):
        proc = spawn("_store_worker", "hold", name, where, kind)
        if proc.stdout.readline().decode().strip() != "HOLDING":
            problems.append(f"run {run}: the holder did not take the lock")
        proc.kill()
        proc.wait()
        proc.stdout.close()
        done: list[BaseException | None] = []
        started = time.monotonic()
        worker = threading.Thread(target=_attempt, args=(name, where, kind, done))
        worker.start()
        worker.join(30)
        took = time.monotonic() - started
        if not done or done[0] is not None or took >= 1.0:
            problems.append(f"run {run}: {done[0] if done else 'blocked'} after {took:.2f} s")
    campaign.record("C6", f"{name}-{kind}", runs, problems)
    assert problems == []


def _attempt(name: str, where: str, kind: str, done: list) -> None:
    try:
        _take_again(name, where, kind)
    except Exception as exc:  # reported as the run's failure
        done.append(exc)
        return
    done.append(None)


# --- D1: a full disk --------------------------------------------------------------------------
def _fills_up(exc: BaseException) -> bool:
    """ENOSPC, possibly wrapped (SQLite reports 'database or disk is full')."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "full" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".klepto-tmp" in p.name or p.name.endswith(".tmp")]


@pytest.mark.parametrize("size", [300, 3000, 30_000])
@pytest.mark.parametrize("name", NAMES)
def test_disk_full_raises_and_keeps_data(campaign, name, size):
    """D1: the write that hits ENOSPC raises; every acked write reads back; no temp file is
    left; once space is freed, writes work again."""
    adapter = ADAPTERS[name]
    problems = []
    with small_tmpfs() as mount:
        ballast = mount / "ballast"
        ballast.write_bytes(bytes(1_200_000))  # freeing it gives more than the store took
        where = location(name, mount / "s")
        os.makedirs(os.path.dirname(where))
        written: dict[int, str] = {}
        handle = adapter.open(where)
        try:
            for i in range(100_000):
                text = f"{i}:" + os.urandom(size // 2).hex()
                adapter.put(handle, i, text)
                written[i] = text
            problems.append("the disk never filled up")
        except Exception as exc:  # the item: the error must surface, and be the right one
            if not _fills_up(exc):
                problems.append(f"raised {type(exc).__name__}: {exc}")
        problems += [f"temp file {n} left" for n in _temps(mount)]
        ballast.unlink()  # space is freed
        try:
            adapter.close(handle)
            found = adapter.state(where)
            if {k: found.get(k) for k in written} != written:
                problems.append("acked data did not read back")
            handle = adapter.open(where)
            adapter.put(handle, -1, "after")
            adapter.close(handle)
            if adapter.state(where).get(-1) != "after":
                problems.append("no write after space was freed")
        except Exception as exc:  # the store must stay usable
            problems.append(f"after freeing space: {type(exc).__name__}: {exc}")
    campaign.record("D1", name, 1, problems)
    assert problems == []


# --- D2: permission denied --------------------------------------------------------------------
def _read_only_copy(name: str, where: str) -> None:
    """Everything the store keeps made readable, and nothing writable, for other users."""
    for path in ADAPTERS[name].paths(where):
        if not os.path.exists(path):
            continue
        paths = [Path(path), *Path(path).rglob("*")] if os.path.isdir(path) else [Path(path)]
        for each in paths:
            each.chmod(0o555 if each.is_dir() else 0o444)


def _listing(folder: Path) -> list[str]:
    """Every path under ``folder``, but SQLite's -wal/-shm (made by any reader)."""
    return sorted(str(p) for p in folder.rglob("*") if not str(p).endswith(("-wal", "-shm")))


def _read_then_write(name: str, where: str, want: dict) -> int:
    adapter = ADAPTERS[name]
    try:
        if adapter.state(where) != want:
            return 2
    except Exception:  # reading a read-only store must work
        return 4
    try:
        handle = adapter.open(where)
        adapter.put(handle, 99, "denied")
    except PermissionError:
        return 0
    except Exception as exc:  # a wrapped PermissionError counts: the caller can tell
        cause = exc.__cause__ or exc.__context__
        return 0 if isinstance(cause, PermissionError) else 5
    return 3


@pytest.mark.parametrize("name", NAMES)
def test_read_only_store_reads_and_refuses_writes(tmp_path_factory, campaign, name):
    """D2: as an unprivileged user, a read-only store reads fine, and writes raise
    PermissionError (never a silent no-op) without leaving anything behind."""
    base = tmp_path_factory.mktemp("d2")
    # SQLite in WAL mode creates its -shm file beside the database even to read (SQLite's
    # rule): its directory stays writable, as /tmp is; the database file is read-only.
    base.chmod(0o1777 if name == "sqlite" else 0o755)
    for parent in base.parents:
        if parent == Path("/tmp") or not str(parent).startswith("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    where = location(name, base)
    adapter = ADAPTERS[name]
    handle = adapter.open(where)
    for i in range(5):
        adapter.put(handle, i, value(1, i))
    adapter.close(handle)
    adapter.state(where)  # lazy imports happen now: the interpreter may be root's only
    _read_only_copy(name, where)
    before = _listing(base)
    status = as_user("nobody", lambda: _read_then_write(name, where, expected(1, 5)))
    meaning = {2: "wrong data", 3: "the write succeeded", 4: "reading failed", 5: "not EPERM"}
    problems = [] if status == 0 else [meaning.get(status, f"status {status}")]
    if _listing(base) != before:
        problems.append("the refused write left files behind")
    campaign.record("D2", name, 1, problems)
    assert problems == []


# --- D3: modes of created files ---------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_created_files_are_private(tmp_path, campaign, name):
    """D3: under umask 022, every file a store creates is 0o600 and every directory 0o700."""
    folder = tmp_path / "d3"
    folder.mkdir()
    old = os.umask(0o022)
    try:
        adapter = ADAPTERS[name]
        handle = adapter.open(location(name, folder))
        for i in range(30):
            adapter.put(handle, i, value(2, i))
        adapter.close(handle)
    finally:
        os.umask(old)
    problems = []
    for path in folder.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            problems.append(f"{path.relative_to(folder)}: {oct(mode)}")
    campaign.record("D3", name, 1, problems)
    assert problems == []


def test_dir_permissions_option_still_works(tmp_path, campaign):
    """D3: the classic ``permissions`` argument sets the modes instead."""
    from klepto.archives import dir_archive

    with campaign.run("D3", "dir-permissions"):
        archive = dir_archive(str(tmp_path / "p"), cached=False, permissions=0o750)
        archive["a"] = 1
        assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o750
        files = [p for p in (tmp_path / "p").rglob("*") if p.is_file()]
        assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in files)
