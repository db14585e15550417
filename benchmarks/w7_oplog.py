"""W7: the operation store against blackhc.laaos 1.1.0: 100k ``store['losses'].append(x)``
of random floats, then a fresh load of the file, both in the same process, alternating,
median of several repetitions.

laaos writes and flushes one line of Python per operation (each survives a killed process
once the call returns) and loads by executing the file. klepto appends data records to a
record file and loads by parsing them. Two klepto settings are measured, labelled apart:

* the default, a commit per operation: as safe as laaos (each operation is in the file,
  safe from a killed process, when the call returns; one sealed record, one write each).
  The targets (appends at least 1.0x laaos, load at least 5x faster) apply to it.
* ``batch=1000``: a commit every 1000 operations, faster, but a killed process loses up to
  999 acknowledged operations; reported for comparison, without a target.
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
DEFAULT = "klepto (default: per-op)"
BATCHED = "klepto (batch=1000, unsafe)"
NOTES = {
    DEFAULT: "a commit per operation, each safe from a kill when append returns",
    BATCHED: "a commit per 1000 operations: a kill may lose up to 999 of them",
    PEER: "a write and flush per operation",
}


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
    repeat = 3 if quick else 5
    rng = random.Random(7)
    values = [rng.random() for _ in range(count)]
    directory = tempfile.mkdtemp(prefix="klepto-w7-")
    laaos = optional("blackhc.laaos")
    try:
        runs = {
            DEFAULT: (lambda: _klepto_run(directory, values, 1), safe_load),
            BATCHED: (lambda: _klepto_run(directory, values, 1000), safe_load),
        }
        if laaos is not None:
            runs[PEER] = (lambda: _laaos_run(laaos, directory, values), laaos.safe_load)
        figures = _measure(runs, repeat, count)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return _results(figures, count, laaos is not None)


def _results(figures, count, have_peer) -> list[Result]:
    peer = PEER if have_peer else None
    results = []
    for name, data in figures.items():
        is_peer = name == PEER
        compared = None if is_peer else peer
        extra = {
            "bytes_per_op": statistics.median(data["size"]) / count,
            "ops": count,
            "commits": NOTES[name],
        }
        results.append(
            Result(
                NAME,
                "appends (ops/s)",
                name,
                count / statistics.median(data["append"]),
                "ops/s",
                compared,
                1.0 if name == DEFAULT and peer else None,
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
                compared,
                0.2 if compared else None,  # at least 5x faster
                extra=extra,
            )
        )
        results.append(
            Result(NAME, "bytes per op (file)", name, extra["bytes_per_op"], "B", compared)
        )
    return results
