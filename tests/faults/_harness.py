"""What every fault test shares: worker processes and their acknowledgements, the damage a
corruption trial does, and the environments (a tiny tmpfs, an unprivileged user, a
loop-mounted ext4 image whose copy is a power-loss image).

A worker prints one line per acknowledged operation and flushes it (``A <i>``), so the
harness knows exactly what was acknowledged when it sends SIGKILL.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAULTS = ("truncate", "flip", "zero4k", "garbage")


# --- worker processes -----------------------------------------------------------------------
def spawn(module: str, *args: object, env: dict | None = None, **popen: object):
    """``python -m tests.faults.<module> args...`` with its stdout piped (bytes)."""
    environment = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    command = [sys.executable, "-m", f"tests.faults.{module}", *map(str, args)]
    return subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, **popen)


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
    proc.stdout.close()
    return lines


def kill_after(proc: subprocess.Popen, delay: float) -> list[str]:
    """SIGKILL ``proc`` ``delay`` s after it started; every line it printed."""
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    lines = proc.stdout.read().decode().splitlines()
    proc.wait()
    proc.stdout.close()
    return lines


def acked(lines: list[str]) -> int:
    """Index of the last acknowledged operation (-1 if none)."""
    return max((int(line[2:]) for line in lines if line.startswith("A ")), default=-1)


def ops(seed: int, count: int) -> list[tuple[str, str]]:
    """``count`` (key, value) writes: 25% overwrite an earlier key; values of 8 B to 4 KiB."""
    rng = random.Random(seed)
    keys: list[str] = []
    out = []
    for i in range(count):
        if keys and rng.random() < 0.25:
            key = rng.choice(keys)
        else:
            key = f"key-{i}"
            keys.append(key)
        size = rng.choice([8, 100, 1000, 4096])
        out.append((key, f"{i}:" + "v" * size))
    return out


def dump_points(seed: int, count: int) -> list[int]:
    """Indexes of the operations after which a cached writer calls ``dump()`` (every 1-20)."""
    rng = random.Random(seed + 1)
    points, index = [], -1
    while index < count - 1:
        index = min(index + rng.randint(1, 20), count - 1)
        points.append(index)
    return points


def replay(operations: list[tuple[str, str]], upto: int, base: dict | None = None) -> dict:
    state = dict(base or {})
    for key, value in operations[: upto + 1]:
        state[key] = value
    return state


def run_in_child(check: Callable[[], int], timeout: float = 60.0) -> int:
    """Run ``check`` in a forked child; its exit status (-1: still running at ``timeout``,
    it is then killed: a deadlock)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            status = check()
        finally:
            os._exit(status)
    return wait_child(pid, timeout)


def wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


# --- damage ---------------------------------------------------------------------------------
def damage_bytes(data: bytes, fault: str, rng: random.Random) -> bytes:
    """``data`` truncated (half in the last 64 KiB), with a flipped byte, a zeroed 4 KiB page
    that was not all zeros, or 1-8 KiB of garbage appended."""
    size = len(data)
    if fault == "truncate":
        low = max(0, size - 65536) if rng.random() < 0.5 else 0
        return data[: rng.randint(low, size - 1)]
    if fault == "flip":
        offset = rng.randrange(size)
        return data[:offset] + bytes([data[offset] ^ rng.randint(1, 255)]) + data[offset + 1 :]
    if fault == "zero4k":
        offset = rng.randrange(0, size, 4096) if size > 4096 else 0
        length = min(4096, size - offset)
        if data[offset : offset + length] == bytes(length):  # zero a page that is not
            offset, length = 0, min(4096, size)
        return data[:offset] + bytes(length) + data[offset + length :]
    return data + os.urandom(rng.randint(1024, 8192))


def damage(path: str | os.PathLike, fault: str, rng: random.Random) -> None:
    """Damage the file at ``path`` in place (see :func:`damage_bytes`)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(damage_bytes(data, fault, rng))


# --- environments ---------------------------------------------------------------------------
def _need_root(what: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(f"{what} needs root and mount(8)")


@contextlib.contextmanager
def small_tmpfs(size: str = "2m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (D1: a disk that fills up)."""
    _need_root("mounting a tmpfs")
    mount = Path(tempfile.mkdtemp(prefix="klepto-d1-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        gc.collect()  # stores dropped by a failed assertion still hold their files
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def as_user(name: str, check: Callable[[], int], timeout: float = 120.0) -> int:
    """Run ``check`` in a forked child that dropped to user ``name`` (root bypasses modes)."""
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to act as an unprivileged user")
    user = pwd.getpwnam(name)

    def dropped() -> int:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        return check()

    return run_in_child(dropped, timeout)


class Ext4Image:
    """An ext4 file system in an image file, loop-mounted with ``data=ordered``.

    :meth:`crash_copy` copies the *backing image* right after the writer was killed: the
    copy holds only the blocks the kernel wrote back, which (with a long journal commit
    interval and the default 30 s dirty expiry) are the ones fsync forced out, so mounting
    the copy is what a machine would see after a power cut at that instant.
    """

    def __init__(self, folder: Path, size_mb: int = 48) -> None:
        _need_root("a loop-mounted ext4 image")
        if shutil.which("mkfs.ext4") is None:
            pytest.skip("mkfs.ext4 is not installed")
        self.folder = folder
        self.image = folder / "disk.img"
        self.mount = folder / "mnt"
        self.mount.mkdir()
        with open(self.image, "wb") as handle:
            handle.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        self._mount(self.image, self.mount)

    @staticmethod
    def _mount(image: Path, where: Path) -> None:
        done = subprocess.run(
            ["mount", "-o", "loop,data=ordered,commit=600", str(image), str(where)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image: {done.stderr.decode().strip()}")

    @contextlib.contextmanager
    def crash_copy(self) -> Iterator[Path]:
        """Mount a copy of the image as it is on the (virtual) disk now."""
        copy = self.folder / "crash.img"
        shutil.copyfile(self.image, copy)
        where = self.folder / "crash"
        where.mkdir(exist_ok=True)
        self._mount(copy, where)  # mounting replays the journal, as after a reboot
        try:
            yield where
        finally:
            gc.collect()
            subprocess.run(["umount", str(where)], check=True)
            copy.unlink()

    def close(self) -> None:
        gc.collect()
        subprocess.run(["umount", str(self.mount)], check=False)
        self.image.unlink(missing_ok=True)
