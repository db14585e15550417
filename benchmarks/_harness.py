"""Timing, result records and the ratio table shared by every workload.

A workload module defines ``NAME`` (e.g. ``"W1"``), ``TITLE`` and ``run(quick) ->
list[Result]``. Each :class:`Result` is one measured figure of one implementation; a result
with ``peer`` set is compared against the peer's figure for the same metric, and
``target`` is the largest acceptable klepto/peer ratio (lower figures are better unless
``higher_is_better``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: When a workload last deleted thousands of files (the file's mtime).
DELETED_MARK = Path(tempfile.gettempdir()) / "klepto-bench-deleted"
MASS_DELETION = 10_000  # files: W3's ~70k slow file creation down 3-8x; W4's ~6k barely
#: How long creating files stays slow after mass deletions once they are written out.
SETTLE_SECONDS = 65.0


@dataclass
class Result:
    workload: str
    metric: str
    impl: str
    value: float
    unit: str
    peer: str | None = None
    target: float | None = None
    higher_is_better: bool = False
    extra: dict = field(default_factory=dict)


def median_time(func: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Median seconds of ``repeat`` timings of ``number`` calls of ``func`` (per call)."""
    samples = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        for _ in range(number):
            func()
        samples.append((time.perf_counter() - started) / number)
    return statistics.median(samples)


def per_op(seconds: float, operations: int) -> float:
    return seconds / operations


def ratio(result: Result, by_key: dict[tuple[str, str, str], Result]) -> float | None:
    if result.peer is None:
        return None
    peer = by_key.get((result.workload, result.metric, result.peer))
    if peer is None or peer.value == 0:
        return None
    if result.higher_is_better:
        return peer.value / result.value if result.value else float("inf")
    return result.value / peer.value


def report(results: list[Result], emit_json: bool = True) -> int:
    """Print the ratio table (and JSON lines); return the number of missed targets."""
    by_key = {(r.workload, r.metric, r.impl): r for r in results}
    missed = 0
    print(
        f"{'workload':<6} {'metric':<34} {'impl':<28} {'value':>12} {'unit':<8} "
        f"{'vs peer':<22} {'ratio':>7} {'target':>7}"
    )
    for result in results:
        r = ratio(result, by_key)
        ok = r is None or result.target is None or r <= result.target
        missed += not ok
        shown = f"{r:7.3f}" if r is not None else ""
        target = f"{result.target:7.2f}" if result.target is not None else ""
        flag = "" if ok else "  MISSED"
        print(
            f"{result.workload:<6} {result.metric:<34} {result.impl:<28} "
            f"{result.value:12.4g} {result.unit:<8} {result.peer or '':<22} "
            f"{shown:>7} {target:>7}{flag}"
        )
    if emit_json:
        for result in results:
            line = asdict(result)
            line["ratio"] = ratio(result, by_key)
            print("JSON " + json.dumps(line, sort_keys=True))
    return missed


@contextlib.contextmanager
def bench_dir(prefix: str, *, settle: bool = True) -> Iterator[Path]:
    """A scratch directory for stores under ``$KLEPTO_BENCH_DIR`` (by default the current
    directory: a disk the user keeps data on; ``/tmp`` is often a tmpfs), deleted at the end.

    Why the waiting: ext4 without a journal (as on this project's virtual machines) skips,
    when it allocates an inode, every inode freed in the last 60 seconds, or 360 while
    the freed inode's table block is not written out (``recently_deleted`` in the
    kernel's ``fs/ext4/ialloc.c``). For that long after thousands of files are deleted,
    creating a file costs 5-20x more (measured: ~40 us -> 0.2-1 ms), which would land on
    whichever store creates files next: a directory archive run right after another
    workload deleted its stores. So the deletion is written out at once (``os.sync``:
    the 60 s case) and, if it was of :data:`MASS_DELETION` files or more, the next
    workload waits until it is :data:`SETTLE_SECONDS` old (not with ``settle=False``:
    ``--quick`` runs, whose figures are not for the targets). That removes most of the
    effect, not all:
    new files created next to the freed inodes make their table blocks dirty again (the
    360 s case), which is why W3 also measures a bare file-per-key floor in the same run.
    """
    if settle:
        settle_file_system()
    where = os.environ.get("KLEPTO_BENCH_DIR") or os.getcwd()
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield base
    finally:
        deleted = sum(len(files) for _, _, files in os.walk(base))
        shutil.rmtree(base, ignore_errors=True)
        os.sync()
        if deleted >= MASS_DELETION:
            with contextlib.suppress(OSError):  # another user's mark: never lose the results
                DELETED_MARK.touch()


def settle_file_system() -> None:
    """Write out pending work; wait until the last deletion is :data:`SETTLE_SECONDS` old."""
    os.sync()
    try:
        age = time.time() - DELETED_MARK.stat().st_mtime
    except OSError:
        return
    if age < SETTLE_SECONDS:  # a mark in the future (clock set back): the whole wait
        wait = min(SETTLE_SECONDS, SETTLE_SECONDS - age)
        print(f"#   waiting {wait:.0f} s for the file system after the last deletion", flush=True)
        time.sleep(wait)
