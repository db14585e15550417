"""Scratch directories for the stores the workloads create, and a file system let settle.

Why: ext4 without a journal (as on this project's virtual machines) skips, when it
allocates an inode, every inode freed in the last 60 seconds, or 360 while the freed
inode's table block is not written out (``recently_deleted`` in the kernel's
``fs/ext4/ialloc.c``; new files next to the freed inodes make those blocks dirty again).
For that long after thousands of files are deleted anywhere on the disk, creating a file
costs 5-20x more (measured: ~40 us -> 0.2-1 ms, all of it system time), which lands on
whichever store creates a file per key: the directory archive, right after another
workload deleted its stores.

So nothing is deleted while workloads run: every scratch directory is deleted when the run
ends (:func:`delete_scratch`, called by ``python -m benchmarks`` after the last workload and
at exit), the deletion is written out, and if it was of :data:`MASS_DELETION` files or more
a mark file records when. A run started within :data:`SETTLE_SECONDS` of that mark first
waits out the rest (``$KLEPTO_BENCH_SETTLE`` seconds instead; 0: never wait), unless it is a
``--quick`` run, whose figures are not for the targets. Deletions by anything else (a test
suite in ``/tmp`` on the same disk) are not seen: W3's file-per-key floor shows them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: When a run last deleted thousands of files (the file's mtime).
DELETED_MARK = Path(tempfile.gettempdir()) / "klepto-bench-deleted"
MASS_DELETION = 10_000  # files (a full run deletes ~100k; W3 alone ~70k)
SETTLE_SECONDS = float(os.environ.get("KLEPTO_BENCH_SETTLE", "365"))  # 360 s + a margin

_pending: list[Path] = []


@contextlib.contextmanager
def bench_dir(prefix: str, *, settle: bool = True) -> Iterator[Path]:
    """A scratch directory under ``$KLEPTO_BENCH_DIR`` (by default the current directory: a
    disk the user keeps data on; ``/tmp`` is often a tmpfs), deleted when the run ends.
    With ``settle``, the file system is first given time to settle (module docstring)."""
    if settle:
        settle_file_system()
    where = os.environ.get("KLEPTO_BENCH_DIR") or os.getcwd()
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    if not _pending:
        atexit.register(delete_scratch)  # a run that fails half-way leaves nothing behind
    _pending.append(base)
    yield base


def delete_scratch() -> None:
    """Delete every scratch directory of this run; mark the time if thousands of files went."""
    deleted = 0
    while _pending:
        base = _pending.pop()
        deleted += sum(len(files) for _, _, files in os.walk(base))
        shutil.rmtree(base, ignore_errors=True)
    if not deleted:
        return
    os.sync()
    if deleted >= MASS_DELETION:
        with contextlib.suppress(OSError):  # another user's mark: never lose the results
            DELETED_MARK.touch()


def settle_file_system() -> None:
    """Write out pending work; wait until the last mass deletion is SETTLE_SECONDS old."""
    os.sync()
    try:
        age = time.time() - DELETED_MARK.stat().st_mtime
    except OSError:
        return
    if age < SETTLE_SECONDS:  # a mark in the future (clock set back): the whole wait
        wait = min(SETTLE_SECONDS, SETTLE_SECONDS - age)
        print(
            f"#   waiting {wait:.0f} s: the last run deleted thousands of files, and this "
            "file system creates files slowly for up to 6 minutes after that "
            "(KLEPTO_BENCH_SETTLE=0 to skip)",
            flush=True,
        )
        time.sleep(wait)
