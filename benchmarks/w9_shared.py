"""W9: a shared cache on PostgreSQL, MariaDB and Redis; N processes memoizing into it.

``N`` processes (2, then 8), started together, each memoize a function into one raw shared
archive (``sql_archive`` on the server, or ``redis_archive``): first ``TOTAL / N`` distinct
calls each (misses: computed and stored, under the archive's stampede lock when the memoizer
takes it), then the same calls again (hits: served from the archive). Rates are all calls
over the wall time from the start signal until the last process is done. Then the keys that
are missing or wrong are counted (lost keys must be 0), and one process times a bulk
``dump()`` of 10k entries from a ``cache`` front (batched: one round trip per 500 rows).

Servers come from ``KLEPTO_POSTGRES_URL``, ``KLEPTO_MARIADB_URL`` and ``KLEPTO_REDIS_URL``
(the test suite's defaults otherwise); one that cannot be reached is reported and skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Result

NAME = "W9"
TITLE = "shared cache on PostgreSQL, MariaDB and Redis: hits/s, stores/s, bulk dump, lost keys"
DUMP_ROWS = 10_000
VALUE = {"a": 1, "b": "x" * 56, "c": [1, 2, 3], "d": 3.5}

SERVERS = {
    "postgresql": os.environ.get(
        "KLEPTO_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("KLEPTO_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "redis": os.environ.get("KLEPTO_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


def _sql(url: str, tag: str) -> tuple[Any, Callable[[], None]]:
    """A new ``sql_archive`` in a database of its own, and how to drop it."""
    from sqlalchemy.engine import make_url

    from klepto.archives import sql_archive

    database = make_url(url).set(database=f"klepto_w9_{tag}")
    archive = sql_archive(database.render_as_string(hide_password=False), cached=False)
    return archive, lambda: archive.__drop__(database=True)


def _redis(url: str, tag: str) -> tuple[Any, Callable[[], None]]:
    from klepto.archives import redis_archive

    archive = redis_archive(f"w9-{tag}", url=url, cached=False)
    return archive, archive.__drop__


OPENERS = {"postgresql": _sql, "mariadb": _sql, "redis": _redis}


def _value(x: Any) -> Any:
    return {**VALUE, "x": x}


def _worker(archive: Any, wid: int, count: int, barrier: Any, queue: Any) -> None:
    """In a worker process: misses for this worker's keys, then hits for the same keys."""
    from klepto import inf_cache

    @inf_cache(cache=archive)
    def compute(wid: int, i: int) -> Any:
        return _value((wid, i))

    compute(wid, -1)  # connect (and warm up) before the clock starts
    times = []
    for _ in range(2):  # misses, then hits
        barrier.wait()
        started = time.monotonic()
        for i in range(count):
            compute(wid, i)
        times.append((started, time.monotonic()))
    queue.put((wid, times, compute.info()))


def _round(archive: Any, processes: int, total: int) -> tuple[float, float, int]:
    """``(stores/s, hits/s, keys kept)`` of one round of ``processes`` workers."""
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    count = total // processes
    workers = [
        context.Process(target=_worker, args=(archive, w, count, barrier, queue))
        for w in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [queue.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    if any(worker.exitcode for worker in workers):
        raise RuntimeError("a W9 worker failed")
    rates = []
    for phase in (0, 1):
        start = min(times[phase][0] for _, times, _ in reports)
        end = max(times[phase][1] for _, times, _ in reports)
        rates.append(count * processes / (end - start))
    keys = [(w, i) for w in range(processes) for i in range(count)]
    stored = archive._get_many(keys)
    kept = sum(stored.get(key) == _value(key) for key in keys)
    return rates[0], rates[1], kept


def _dump_rate(archive: Any) -> float:
    """Rows per second of one ``dump()`` of DUMP_ROWS entries from a ``cache`` front."""
    from klepto.archives import cache

    front = cache(archive=archive)
    front.update({("dump", i): _value(i) for i in range(DUMP_ROWS)})
    started = time.perf_counter()
    front.dump()
    return DUMP_ROWS / (time.perf_counter() - started)


def _reachable(backend: str) -> str | None:
    """None if the server answers, else why not."""
    url = SERVERS[backend]
    try:
        _, drop = OPENERS[backend](url, "probe")
        drop()
    except Exception as exc:  # any failure means: skip this server, and say why
        return f"{type(exc).__name__}: {exc}"
    return None


def _backend(backend: str, quick: bool) -> list[Result]:
    total = 2000 if quick else 8000
    repeat = 1 if quick else 3
    results = []
    for processes in (2, 8):
        samples = []
        for rep in range(repeat):
            tag = f"{processes}_{rep}_{uuid.uuid4().hex[:6]}"
            archive, drop = OPENERS[backend](SERVERS[backend], tag)
            try:
                samples.append(_round(archive, processes, total))
            finally:
                drop()
        results += _round_results(backend, processes, total, samples)
    archive, drop = OPENERS[backend](SERVERS[backend], f"dump_{uuid.uuid4().hex[:6]}")
    try:
        rate = statistics.median(_dump_rate(archive) for _ in range(repeat))
    finally:
        drop()
    results.append(Result(NAME, "bulk dump() of 10k rows", backend, rate, "rows/s"))
    return results


def _round_results(
    backend: str, processes: int, total: int, samples: list[tuple[float, float, int]]
) -> list[Result]:
    stores = statistics.median(s for s, _, _ in samples)
    hits = statistics.median(h for _, h, _ in samples)
    kept = min(k for _, _, k in samples)
    everything = f"all {total} keys"
    return [
        Result(NAME, f"misses stored/s, {processes} procs", backend, stores, "ops/s"),
        Result(NAME, f"hits served/s, {processes} procs", backend, hits, "ops/s"),
        Result(NAME, f"keys kept, {processes} procs", everything, total, "keys"),
        Result(
            NAME,
            f"keys kept, {processes} procs",
            backend,
            kept,
            "keys",
            everything,
            1.0,
            True,
            extra={"lost": total - kept},
        ),
    ]


def run(quick: bool = False) -> list[Result]:
    results: list[Result] = []
    for backend in SERVERS:
        problem = _reachable(backend)
        if problem is not None:
            print(f"#   {backend} skipped: {problem}", flush=True)
            continue
        results += _backend(backend, quick)
    return results
