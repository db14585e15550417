"""dir_archive under real faults: kill -9 of writers (A2, A3, A7), concurrent writer and
reader processes (C1, C2), a full disk (D1) and a read-only store (D2).

Every check counts outcomes; none depends on timing. ``-m full`` runs the campaign sizes
of docs/reliability (100 kill runs, 5 repetitions, N=32 writers).
"""

from __future__ import annotations

import contextlib
import errno
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

from klepto.archives import dir_archive
from tests.faults import _dir_worker as worker

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
KILL_OPS = 300


def spawn(*args: object, **popen: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "tests.faults._dir_worker", *map(str, args)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, **popen)


def kill_after_acks(proc: subprocess.Popen, acks: int, delay: float) -> tuple[list[str], bool]:
    """SIGKILL ``proc`` ``delay`` s after its ``acks``-th ack; every line it printed, and
    whether the kill landed before the worker finished."""
    lines, seen = [], 0
    for raw in proc.stdout:
        lines.append(raw.decode().strip())
        seen += lines[-1].startswith("A ")
        if seen >= acks or lines[-1] == "END":
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    lines += proc.stdout.read().decode().splitlines()  # acks printed before the kill landed
    proc.wait()
    return lines, "END" not in lines


def acked(lines: list[str]) -> int:
    """Index of the last acknowledged operation (-1 if none)."""
    return max((int(line[2:]) for line in lines if line.startswith("A ")), default=-1)


def replay(operations: list[tuple[str, str]], upto: int) -> dict[str, str]:
    state: dict[str, str] = {}
    for key, value in operations[: upto + 1]:
        state[key] = value
    return state


def check_after_kill(root: Path, before: dict, after: dict) -> list[str]:
    """Problems with the reopened store, given the states before/after the in-flight step."""
    problems = []
    archive = dir_archive(str(root), cached=False)
    found = archive.__asdict__()
    for key in set(found) - set(before) - set(after):
        problems.append(f"phantom key {key!r}")
    for key in set(before) | set(after):
        allowed = {before.get(key, "<absent>"), after.get(key, "<absent>")}
        if found.get(key, "<absent>") not in allowed:
            problems.append(f"{key!r}: {found.get(key, '<absent>')[:12]!r} not in old/new")
    archive["after-crash"] = "ok"
    if dir_archive(str(root), cached=False)["after-crash"] != "ok":
        problems.append("the store does not accept a write after the crash")
    return problems


def kill_runs(tmp_path: Path, mode: str, runs: int) -> tuple[list[str], int]:
    failures, landed = [], 0
    for seed in range(runs):
        rng = random.Random(seed)
        root = tmp_path / f"{mode}{seed}"
        operations = worker.ops(seed, KILL_OPS)
        points = worker.dump_points(seed, KILL_OPS)
        ack_count = len(operations) if mode == "direct" else len(points)
        proc = spawn(mode, root, seed, KILL_OPS)
        lines, early = kill_after_acks(proc, rng.randint(1, ack_count - 1), rng.uniform(0, 0.003))
        landed += early
        last = acked(lines)
        if mode == "direct":
            inflight_end = min(last + 1, KILL_OPS - 1)
        else:
            inflight_end = next((p for p in points if p > last), last)
        problems = check_after_kill(
            root, replay(operations, last), replay(operations, inflight_end)
        )
        failures += [f"seed {seed}: {problem}" for problem in problems]
        shutil.rmtree(root)
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


@pytest.mark.parametrize("runs", [8, pytest.param(100, marks=[pytest.mark.full, pytest.mark.slow])])
def test_kill9_during_creation(tmp_path, runs):
    """A7: a store killed while being created is absent or valid, never unopenable."""
    for seed in range(runs):
        root = tmp_path / f"create{seed}"
        proc = spawn("create", root)
        time.sleep(random.Random(seed).uniform(0.1, 0.4))
        proc.send_signal(signal.SIGKILL)
        lines = proc.stdout.read().decode().split("\n")
        proc.wait()
        if not root.exists():
            continue
        archive = dir_archive(str(root), cached=False)
        acks = sum(line.startswith("A ") for line in lines)
        assert len(archive) >= acks
        assert all(archive[f"k{i}"] == i for i in range(acks))
        archive["new"] = 1
        assert archive["new"] == 1


def run_writers(root: Path, writers: int, keys: int, shared: int, dump_every: int) -> None:
    stop = root.parent / f"{root.name}.stop"
    dir_archive(str(root), cached=False)  # created up front so that readers can open it
    readers = [spawn("reader", root, stop) for _ in range(2)]
    procs = [spawn("writer", root, w, keys, shared, dump_every) for w in range(writers)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    stop.touch()
    reports = [json.loads(r.communicate(timeout=60)[0]) for r in readers]
    assert [p.returncode for p in procs] == [0] * writers, outputs
    assert all(r.returncode == 0 for r in readers)
    for report in reports:
        assert report["errors"] == [] and report["rounds"] >= 1, report
        assert (report["drops"], report["missing"], report["phantoms"], report["bad"]) == (
            0,
            0,
            0,
            0,
        ), report
    final = dir_archive(str(root), cached=False).__asdict__()
    lost = [(w, i) for w in range(writers) for i in range(keys) if final.get((w, i)) != f"{w}:{i}"]
    assert lost == []
    for j in range(shared):
        writer_id = final[("shared", j)].split(":")[0]
        assert final[("shared", j)] == f"{writer_id}:shared{j}"
    assert len(final) == writers * keys + shared


@pytest.mark.parametrize("writers,keys", [(2, 200), (8, 100)])
def test_concurrent_writers_lose_nothing(tmp_path, writers, keys):
    run_writers(tmp_path / "c1", writers, keys, shared=5, dump_every=0)


@pytest.mark.parametrize("writers,keys", [(2, 100), (8, 50)])
def test_concurrent_dumps_merge(tmp_path, writers, keys):
    run_writers(tmp_path / "c2", writers, keys, shared=5, dump_every=10)


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.parametrize("dump_every", [0, 10])
@pytest.mark.parametrize("repetition", range(5))
def test_campaign_eight_writers(tmp_path, repetition, dump_every):
    run_writers(tmp_path / "c", 8, 200 if dump_every == 0 else 100, 5, dump_every)


@pytest.mark.full
@pytest.mark.slow
def test_campaign_thirty_two_writers(tmp_path):
    run_writers(tmp_path / "c32", 32, 100, 5, 0)


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
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


@pytest.mark.parametrize("value_size", [1000, 7000, 40_000, 150_000, 600_000])
def test_disk_full_raises_and_keeps_data(value_size):
    """D1: the write that hits ENOSPC raises; acked data survives; no temp is left."""
    with small_tmpfs() as mount:
        archive = dir_archive(str(mount / "store"), cached=False)
        written = {}
        with pytest.raises(OSError) as caught:
            for i in range(10_000):
                archive[i] = os.urandom(value_size)
                written[i] = archive[i]
        assert caught.value.errno == errno.ENOSPC
        assert archive.__asdict__() == written
        names = os.listdir(mount / "store")
        assert not [name for name in names if name.startswith(".klepto-tmp")]
        for i in list(written)[: max(1, len(written) // 2)]:
            del archive[i]
        archive["after"] = os.urandom(value_size)
        assert len(archive["after"]) == value_size


def test_read_only_store_refuses_writes_loudly(tmp_path):
    """D2: as an unprivileged user, a read-only store reads fine and writes raise."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as an unprivileged user")
    import pwd

    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="klepto-d2-"))
    try:
        base.chmod(0o755)
        store = dir_archive(str(base / "store"), permissions=0o755, cached=False)
        store["a"] = 1
        (base / "store").chmod(0o555)
        assert _as_user(nobody, lambda: _read_then_write(str(base / "store"))) == 0
        expected = [".klepto", os.path.basename(store._getdir("a"))]
        assert sorted(os.listdir(base / "store")) == expected
    finally:
        (base / "store").chmod(0o755)
        shutil.rmtree(base)


def _read_then_write(root: str) -> int:
    archive = dir_archive(root, cached=False)
    if archive["a"] != 1 or list(archive) != ["a"]:
        return 2
    try:
        archive["b"] = 2
    except PermissionError:
        return 0
    return 3


def _as_user(user, check) -> int:
    """Run ``check`` in a forked child that dropped to ``user``; its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            status = check()
        finally:
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
