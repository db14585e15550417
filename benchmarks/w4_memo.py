"""W4: a memoized function persisted to disk, and its hits in a new process.

``work(x, y)`` returns a small dict. A first process makes 1000 distinct calls (the "first"
cost includes writing the results out: klepto's cached archives write them when the cache
is dumped or closed, so that is timed too), then the same calls again (in-memory hits).
A second, fresh process makes the same 1000 calls: every one must be served from disk
(``recomputed`` counts those that were not) and is timed as a new-process hit. Each
implementation runs in its own processes; repetitions are interleaved.
"""

from __future__ import annotations

import json
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

NAME = "W4"
TITLE = "memoized function persisted to disk: first calls, hits, new-process hits"
PEER = "diskcache memoize"
REPO = Path(__file__).resolve().parents[1]
CALLS = [(i, i * 7 % 13) for i in range(1000)]
computed = 0


def work(x: int, y: int) -> dict:
    global computed
    computed += 1
    return {"x": x, "y": y, "sum": x + y, "label": f"{x}-{y}"}


def _klepto(archive: Callable[[str], Any]) -> Callable[[str], tuple[Callable, Callable]]:
    def make(path: str) -> tuple[Callable, Callable]:
        import klepto

        memo = klepto.lru_cache(maxsize=2000, cache=archive(path))(work)
        return memo, memo.__cache__().close

    return make


def _file_archive(path: str) -> Any:
    from klepto.archives import file_archive

    os.makedirs(path, exist_ok=True)
    return file_archive(os.path.join(path, "memo.pkl"))


def _dir_archive(path: str) -> Any:
    from klepto.archives import dir_archive

    return dir_archive(path)


def _sqltable_archive(path: str) -> Any:
    from klepto.archives import sqltable_archive

    os.makedirs(path, exist_ok=True)
    return sqltable_archive(f"sqlite:///{path}/memo.db?table=memo")


def _diskcache(path: str) -> tuple[Callable, Callable]:
    import diskcache

    cache = diskcache.Cache(path)
    return cache.memoize()(work), cache.close


def _joblib(path: str) -> tuple[Callable, Callable]:
    import joblib

    return joblib.Memory(path, verbose=0).cache(work), lambda: None


#: name -> make(path) -> (memoized function, finish); must work in a fresh process.
IMPLS: dict[str, Callable[[str], tuple[Callable, Callable]]] = {
    "klepto lru_cache(file_archive)": _klepto(_file_archive),
    "klepto lru_cache(dir_archive)": _klepto(_dir_archive),
    "klepto lru_cache(sqltable_archive)": _klepto(_sqltable_archive),
    PEER: _diskcache,
    "joblib.Memory": _joblib,
}
#: klepto impl -> metric -> largest acceptable ratio to PEER (performance.md W4).
TARGETS = {
    name: {"first": 1.0, "new-process hit": 1.0} for name in IMPLS if name.startswith("klepto")
}


def _phase_main(argv: list[str]) -> None:
    """In a fresh process: run one phase for one implementation; print JSON timings."""
    name, path, phase = argv
    memo, finish = IMPLS[name](path)
    started = time.perf_counter()
    for x, y in CALLS:
        memo(x, y)
    if phase == "first":
        finish()  # klepto's cached archives write their results here
    first = (time.perf_counter() - started) / len(CALLS)
    started = time.perf_counter()
    for x, y in CALLS:
        memo(x, y)
    hits = (time.perf_counter() - started) / len(CALLS)
    print(json.dumps({"calls": first, "hits": hits, "computed": computed}))


def _phase(name: str, path: str, phase: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import sys; from benchmarks.w4_memo import _phase_main; _phase_main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, name, path, phase],
        capture_output=True,
        check=True,
        env=env,
        cwd=REPO,
    )
    return json.loads(done.stdout)


def _available() -> dict[str, Callable]:
    from benchmarks._peers import optional

    peers = {PEER: "diskcache", "joblib.Memory": "joblib"}
    return {n: f for n, f in IMPLS.items() if n not in peers or optional(peers[n])}


def run(quick: bool = False) -> list[Result]:
    impls = _available()
    repeat = 3 if quick else 5
    samples: dict[str, list[tuple[dict, dict]]] = {name: [] for name in impls}
    with bench_dir(".klepto-w4-", settle=not quick) as base:
        for rep in range(repeat):
            for i, name in enumerate(impls):
                path = str(base / f"{rep}-{i}")
                samples[name].append((_phase(name, path, "first"), _phase(name, path, "again")))
    results = []
    for name, got in samples.items():
        results += _results(name, got)
    if any(name in TARGETS for name in samples):
        results.append(Result(NAME, RECOMPUTED, NONE_RECOMPUTED, 1, "calls"))
    return results


def _results(name: str, got: list[tuple[dict, dict]]) -> list[Result]:
    def median(phase: int, field: str) -> float:
        return statistics.median(sample[phase][field] for sample in got) * 1e6

    targets = TARGETS.get(name, {})
    peer = PEER if targets else None
    recomputed = max(sample[1]["computed"] for sample in got)
    return [
        Result(NAME, "first", name, median(0, "calls"), "us", peer, targets.get("first")),
        Result(NAME, "hit", name, median(0, "hits"), "us"),
        Result(
            NAME,
            "new-process hit",
            name,
            median(1, "calls"),
            "us",
            peer,
            targets.get("new-process hit"),
            extra={"recomputed": recomputed},
        ),
        *_recomputed(name, recomputed),
    ]


RECOMPUTED = "recomputed in new process (+1)"
NONE_RECOMPUTED = "none recomputed (+1)"


def _recomputed(name: str, recomputed: int) -> list[Result]:
    """Recomputations in the new process, plus one: a ratio to 1 that only 0 passes."""
    target = 1.0 if name in TARGETS else None
    peer = NONE_RECOMPUTED if target else None
    return [Result(NAME, RECOMPUTED, name, recomputed + 1, "calls", peer, target)]
