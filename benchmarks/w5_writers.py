"""W5: concurrent writer processes on one archive; lost keys and throughput.

``N`` processes (2, then 8) each write their own 4000/N keys into one store, started
together; the throughput is all writes over the wall time from the start signal until the
last writer is done. A reader then counts the keys that are missing or wrong. klepto's
archives are used raw (``cached=False``: every write goes to the file or database).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._harness import Result
from benchmarks._scratch import bench_dir

NAME = "W5"
TITLE = "concurrent writer processes: lost keys and throughput"
PEER = "diskcache.Cache"
REPO = Path(__file__).resolve().parents[1]
TOTAL = 4000
VALUE = {"a": 1, "b": "x" * 56, "c": [1, 2, 3], "d": 3.5}


def _file_archive(path: str) -> Any:
    from klepto.archives import file_archive

    os.makedirs(path, exist_ok=True)
    return file_archive(os.path.join(path, "memo.pkl"), cached=False)


def _dir_archive(path: str) -> Any:
    from klepto.archives import dir_archive

    return dir_archive(path, cached=False)


def _sqltable_archive(path: str) -> Any:
    from klepto.archives import sqltable_archive

    os.makedirs(path, exist_ok=True)
    return sqltable_archive(f"sqlite:///{path}/archive.db?table=memo", cached=False)


def _diskcache(path: str) -> Any:
    import diskcache

    return diskcache.Cache(path)


#: name -> opener(path); must work in a fresh process.
STORES: dict[str, Callable[[str], Any]] = {
    "klepto.file_archive": _file_archive,
    "klepto.dir_archive": _dir_archive,
    "sqltable_archive (sqlite)": _sqltable_archive,
    PEER: _diskcache,
}
#: store -> does the throughput target (>= 1.0x diskcache) apply (performance.md W5)?
THROUGHPUT_TARGET = {
    "klepto.file_archive": True,
    "klepto.dir_archive": False,
    "sqltable_archive (sqlite)": True,
}


def _writer_main(argv: list[str]) -> None:
    """In a fresh process: open, wait for the start file, write this writer's keys."""
    name, path, wid, count, start = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    store = STORES[name](path)
    print("READY", flush=True)
    while not os.path.exists(start):
        time.sleep(0.0005)
    for i in range(count):
        store[f"w{wid}-{i}"] = VALUE
    close = getattr(store, "close", None)
    if close is not None:
        close()
    print("DONE", flush=True)


def _round(name: str, path: str, writers: int) -> tuple[float, int]:
    """Seconds for ``writers`` processes to write TOTAL keys, and the keys kept."""
    STORES[name](path)  # created before the writers start
    start = f"{path}.start"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import sys; from benchmarks.w5_writers import _writer_main; _writer_main(sys.argv[1:])"
    count = TOTAL // writers
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, name, path, str(w), str(count), start],
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        for w in range(writers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"READY"
    Path(start).touch()
    started = time.perf_counter()
    for proc in procs:
        # DONE comes once a writer's keys are written and its store is closed; the exit of
        # its interpreter afterwards (tearing down whatever the store imported) is no write.
        assert proc.stdout is not None
        proc.stdout.readline()  # b"" if the writer died: the return code reports it below
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.wait()
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"a {name} writer failed")
    store = STORES[name](path)
    kept = sum(store.get(f"w{w}-{i}") == VALUE for w in range(writers) for i in range(count))
    return elapsed, kept


def _available() -> dict[str, Callable[[str], Any]]:
    from benchmarks._peers import optional

    return {n: f for n, f in STORES.items() if n != PEER or optional("diskcache")}


def run(quick: bool = False) -> list[Result]:
    stores = _available()
    repeat = 2 if quick else 3
    results: list[Result] = []
    with bench_dir(".klepto-w5-", settle=not quick) as base:
        for writers in (2, 8):
            samples: dict[str, list[tuple[float, int]]] = {name: [] for name in stores}
            for rep in range(repeat):
                for i, name in enumerate(stores):
                    path = str(base / f"{writers}-{rep}-{i}")
                    samples[name].append(_round(name, path, writers))
            results += _results(writers, samples)
    return results


def _results(writers: int, samples: dict[str, list[tuple[float, int]]]) -> list[Result]:
    throughput = f"ops/s, {writers} writers"
    kept = f"keys kept of {TOTAL}, {writers} writers"
    everything = f"all {TOTAL} keys"
    results = [Result(NAME, kept, everything, TOTAL, "keys")]
    for name, got in samples.items():
        rate = statistics.median(TOTAL / seconds for seconds, _ in got)
        target = 1.0 if THROUGHPUT_TARGET.get(name) else None
        results.append(
            Result(NAME, throughput, name, rate, "ops/s", PEER if target else None, target, True)
        )
        least = min(k for _, k in got)
        klepto = name in THROUGHPUT_TARGET
        results.append(
            Result(
                NAME,
                kept,
                name,
                least,
                "keys",
                everything if klepto else None,
                1.0 if klepto else None,
                True,
                extra={"lost": TOTAL - least},
            )
        )
    return results
