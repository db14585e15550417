"""Timing, result records and the ratio table shared by every workload.

A workload module defines ``NAME`` (e.g. ``"W1"``), ``TITLE`` and ``run(quick) ->
list[Result]``. Each :class:`Result` is one measured figure of one implementation; a result
with ``peer`` set is compared against the peer's figure for the same metric, and
``target`` is the largest acceptable klepto/peer ratio (lower figures are better unless
``higher_is_better``).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


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
