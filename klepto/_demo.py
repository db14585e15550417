"""The showcase behind ``klepto demo``: a slow function memoized to disk, run twice.

Each run is a separate Python process, as a rerun of a real program would be. The first
process computes every result; it never calls ``dump()``: the cache writes what it holds to
the directory archive when the process exits. The second process uses a new decorator over
the same directory and is served from the archive: it loads what the first one computed and
calls the function for nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class RunReport:
    """What one run of the demo did."""

    label: str
    seconds: float
    hits: int
    misses: int
    loads: int


def slow_model(x: int, y: float = 0.5, *, delay: float) -> float:
    """Stands in for an expensive computation (a model run, a simulation step)."""
    time.sleep(delay)
    return (x * x + y) / (1.0 + y)


def demo_calls(ncalls: int) -> list[tuple[int, float]]:
    """The calls each run makes: every distinct call appears twice (the second is a hit)."""
    distinct = max(1, (ncalls + 1) // 2)
    return [(i % distinct, 0.5 + (i % distinct) % 3) for i in range(ncalls)]


def one_run(location: str, ncalls: int, delay: float) -> dict[str, Any]:
    """One process's run: memoize ``slow_model`` into the directory archive, make the calls."""
    from klepto import lru_cache
    from klepto.archives import dir_archive

    @lru_cache(maxsize=ncalls, cache=dir_archive(location))
    def model(x: int, y: float = 0.5) -> float:
        return slow_model(x, y, delay=delay)

    started = time.perf_counter()
    for x, y in demo_calls(ncalls):
        model(x, y)
    info = model.info()
    # No dump(): the cache front writes its unsaved results when the process exits.
    return {
        "seconds": time.perf_counter() - started,
        "hits": info.hit,
        "misses": info.miss,
        "loads": info.load,
    }


def _run_in_new_process(label: str, location: str, ncalls: int, delay: float) -> RunReport:
    command = [sys.executable, "-m", "klepto._demo", location, str(ncalls), str(delay)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return RunReport(label, **json.loads(done.stdout.strip().splitlines()[-1]))


def run_demo(
    location: str,
    ncalls: int = 20,
    delay: float = 0.05,
    progress: Callable[[RunReport], None] | None = None,
) -> list[RunReport]:
    """Run the showcase twice, each time in a new process, over the archive at ``location``."""
    reports = []
    for label in ("first run (computes)", "second run (new process, from the archive)"):
        report = _run_in_new_process(label, location, ncalls, delay)
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


if __name__ == "__main__":  # the per-process half of run_demo: prints its report as JSON
    path, calls, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sys.stdout.write(json.dumps(one_run(path, calls, seconds)) + "\n")
