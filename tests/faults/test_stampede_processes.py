"""C4, memoization stampede: 16 processes call one memoized function (it sleeps 0.2 s) with
the same argument on an empty shared archive.

Must hold: all get the same result, the archive ends with exactly one entry, no exception.
Reported: how many times the function ran (printed, and asserted to be once: the processes
take the archive's per-key lock, ``archive.lock(key)``, around "look again, compute, store").
Raw archives are protected by default; a ``cache`` front needs ``stampede='process'`` (it
then writes each new result through to its backend before releasing the lock).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import pytest

import klepto
from klepto.archives import dir_archive, file_archive, sqltable_archive

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(sys.platform == "win32", reason="fork start method"),
]

PROCESSES = 16
SLEEP = 0.2


def _open(kind: str, location: str, cached: bool):
    if kind == "dir":
        return dir_archive(location, cached=cached)
    if kind == "file":
        return file_archive(location, cached=cached)
    return sqltable_archive(f"sqlite:///{location}", cached=cached)


def _worker(kind, location, cached, counter, barrier, results):
    archive = _open(kind, location, cached)
    options = {} if not cached else {"stampede": "process"}

    @klepto.lru_cache(cache=archive, **options)
    def expensive(x):
        with open(counter, "ab") as runs:  # O_APPEND: one byte per run, from any process
            runs.write(b"r")
        time.sleep(SLEEP)
        return {"x": x, "computed by": os.getpid()}

    barrier.wait(timeout=60)
    results.put(expensive(42))
    if cached:
        archive.close()


SCENARIOS = [
    ("dir", False),
    ("file", False),
    ("sqlite", False),
    ("dir", True),
]


@pytest.mark.parametrize(
    ("kind", "cached"), SCENARIOS, ids=[f"{k}-{'front' if c else 'raw'}" for k, c in SCENARIOS]
)
def test_c4_stampede_of_processes(kind, cached, tmp_path, campaign):
    context = multiprocessing.get_context("fork")
    location = str(tmp_path / f"shared-{kind}")
    _open(kind, location, cached=False).close()  # created empty before the stampede
    counter = tmp_path / "runs"
    counter.touch()
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    args = (kind, location, cached, str(counter), barrier, results)
    workers = [context.Process(target=_worker, args=args) for _ in range(PROCESSES)]
    started = time.monotonic()
    with campaign.run("C4", f"{kind}-{'front' if cached else 'raw'}"):
        for worker in workers:
            worker.start()
        answers = [results.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(60)
        elapsed = time.monotonic() - started
        runs = counter.read_bytes().count(b"r")
        print(
            f"C4 {kind} {'front' if cached else 'raw'}: the function ran {runs} time(s) "
            f"for {PROCESSES} processes, {elapsed:.2f} s"
        )
        assert all(worker.exitcode == 0 for worker in workers)
        assert all(answer == answers[0] for answer in answers)  # one computation's result
        archive = _open(kind, location, cached=False)
        assert list(archive.items()) == [((42,), answers[0])]
        assert runs == 1
