"""W7: the operation store against blackhc.laaos 1.1.0: 100k ``store['losses'].append(x)``
of random floats, then a fresh load of the file, both in the same process, alternating,
median of several repetitions.

laaos writes and flushes one line of Python per operation and loads by executing the file.
klepto appends data records to a record file and loads by parsing them. The targeted
figures use ``batch=1000`` (a commit every 1000 operations, and at close); the default
(a commit per operation, each one safe from a killed process when the call returns) is
measured too and reported without a target.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time

from benchmarks._harness import Result
from benchmarks._peers import optional

NAME = "W7"
TITLE = "operation store vs blackhc.laaos 1.1.0 (100k list appends, then a fresh load)"
PEER = "blackhc.laaos 1.1.0"
BATCHED = "klepto oplog (batch=1000)"
PER_OP = "klepto oplog (commit per op)"


def _klepto_run(directory: str, values: list[float], batch: int) -> tuple[float, str]:
    from klepto.logs import create_file_store

    store = create_file_store("w7", suffix=f"_{batch}", prefix=directory + "/", truncate=True)
    store.batch = batch
    store["losses"] = []
    started = time.perf_counter()
    for value in values:
        store["losses"].append(value)
    store.close()
    return time.perf_counter() - started, store.path


def _laaos_run(laaos, directory: str, values: list[float]) -> tuple[float, str]:
    store = laaos.create_file_store("w7", suffix="", prefix=directory + "/", truncate=True)
    store["losses"] = []
    started = time.perf_counter()
    for value in values:
        store["losses"].append(value)
    store.close()
    return time.perf_counter() - started, os.path.join(directory, "w7.py")


def _load_seconds(load, path: str, count: int) -> float:
    started = time.perf_counter()
    state = load(path)
    seconds = time.perf_counter() - started
    if len(state["losses"]) != count:
        raise AssertionError(f"{path}: loaded {len(state['losses'])} values, not {count}")
    return seconds


def _measure(runs: dict, repeat: int, count: int) -> dict[str, dict[str, list[float]]]:
    """Alternate the implementations ``repeat`` times; their append and load times."""
    figures: dict[str, dict[str, list[float]]] = {
        name: {"append": [], "load": [], "size": []} for name in runs
    }
    for _ in range(repeat):
        for name, (write, load) in runs.items():
            seconds, path = write()
            figures[name]["append"].append(seconds)
            figures[name]["load"].append(_load_seconds(load, path, count))
            figures[name]["size"].append(os.path.getsize(path))
    return figures


def run(quick: bool = False) -> list[Result]:
    from klepto.logs import safe_load

    count = 10_000 if quick else 100_000
    per_op_count = count // 5  # a commit per operation is slow; fewer, scaled per op
    repeat = 3
    rng = random.Random(7)
    values = [rng.random() for _ in range(count)]
    directory = tempfile.mkdtemp(prefix="klepto-w7-")
    laaos = optional("blackhc.laaos")
    try:
        runs = {BATCHED: (lambda: _klepto_run(directory, values, 1000), safe_load)}
        if laaos is not None:
            runs[PEER] = (lambda: _laaos_run(laaos, directory, values), laaos.safe_load)
        figures = _measure(runs, repeat, count)
        single = _measure(
            {PER_OP: (lambda: _klepto_run(directory, values[:per_op_count], 1), safe_load)},
            repeat,
            per_op_count,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return _results(figures, single, count, per_op_count, laaos is not None)


def _results(figures, single, count, per_op_count, have_peer) -> list[Result]:
    peer = PEER if have_peer else None
    results = []
    for name, data in figures.items():
        is_peer = name == PEER
        extra = {"bytes_per_op": statistics.median(data["size"]) / count, "ops": count}
        results.append(
            Result(
                NAME,
                "appends (ops/s)",
                name,
                count / statistics.median(data["append"]),
                "ops/s",
                None if is_peer else peer,
                None if is_peer else 1.0,
                higher_is_better=True,
                extra=extra,
            )
        )
        results.append(
            Result(
                NAME,
                f"fresh load of {count // 1000}k ops",
                name,
                statistics.median(data["load"]),
                "s",
                None if is_peer else peer,
                None if is_peer else 0.2,  # at least 5x faster
                extra=extra,
            )
        )
    data = single[PER_OP]
    results.append(
        Result(
            NAME,
            "appends (ops/s)",
            PER_OP,
            per_op_count / statistics.median(data["append"]),
            "ops/s",
            peer,
            None,
            higher_is_better=True,
            extra={
                "bytes_per_op": statistics.median(data["size"]) / per_op_count,
                "ops": per_op_count,
                "load_s_per_op": statistics.median(data["load"]) / per_op_count,
            },
        )
    )
    return results
