"""The showcase behind ``klepto demo``: a slow function memoized to an archive, run twice.

The first run computes every result and stores it; the second run uses a *new* decorator
over the same archive (as a new process would) and is served from the archive.
"""

from __future__ import annotations

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


def open_archive(location: Any) -> Any:
    """The archive the demo persists to."""
    from klepto.archives import dict_archive

    return location if location is not None else dict_archive("demo", cached=False)


def one_run(label: str, archive: Any, calls: list[tuple[int, float]], delay: float) -> RunReport:
    """Memoize ``slow_model`` with a fresh decorator over ``archive`` and make ``calls``."""
    from klepto import lru_cache

    @lru_cache(maxsize=len(calls), cache=_front(archive))
    def model(x: int, y: float = 0.5) -> float:
        return slow_model(x, y, delay=delay)

    started = time.perf_counter()
    for x, y in calls:
        model(x, y)
    model.dump()
    info = model.info()
    return RunReport(label, time.perf_counter() - started, info.hit, info.miss, info.load)


def _front(archive: Any) -> Any:
    from klepto.archives import cache

    return cache(archive=archive)


def run_demo(
    location: Any = None,
    ncalls: int = 20,
    delay: float = 0.05,
    progress: Callable[[RunReport], None] | None = None,
) -> list[RunReport]:
    """Run the showcase twice over one archive and return both reports."""
    archive = open_archive(location)
    calls = [(i % 10, 0.5 if i < 10 else 1.5) for i in range(ncalls)]
    reports = []
    for label in ("first run (computes)", "second run (served from the archive)"):
        report = one_run(label, archive, calls, delay)
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports
