"""Worker functions run in other processes by the tests of this folder (importable by name)."""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

from klepto import inf_cache


def memoize_all(
    cache: Any, marks: Any, keys: list[int], seed: int, delay: float, barrier: Any = None
) -> dict[int, int]:
    """Call a function memoized into ``cache`` for every key, in an order of its own.

    Every computation leaves a mark ``(x, token) -> pid`` in ``marks``, so the caller can
    count how often each key was computed across all processes.
    """

    @inf_cache(cache=cache)
    def square(x: int) -> int:
        marks[(x, uuid.uuid4().hex)] = os.getpid()
        time.sleep(delay)
        return x * x

    order = list(keys)
    random.Random(seed).shuffle(order)
    order.remove(keys[0])
    order.insert(0, keys[0])  # every process starts on the same key: a certain stampede
    if barrier is not None:
        barrier.wait()
    return {x: square(x) for x in order}


def run_in_process(queue: Any, function: Any, *args: Any) -> None:
    """``function(*args)`` in a child: put ``('ok', result)`` or ``('error', text)``."""
    try:
        queue.put(("ok", function(*args)))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def write_range(archive: Any, start: int, count: int) -> int:
    """Store ``i -> i * i`` for ``count`` keys from ``start``; return the pid that wrote."""
    archive.update({i: i * i for i in range(start, start + count)})
    for i in range(start, start + count, 7):
        archive[i] = i * i
    return os.getpid()


def read_keys(archive: Any, keys: list[Any]) -> dict[Any, Any]:
    """The values of ``keys`` as this process reads them."""
    return {key: archive[key] for key in keys}


def call_with(function: Any, values: list[Any]) -> list[Any]:
    """``function(v)`` for every value (a memoized function sent to the worker)."""
    return [function(v) for v in values]


def contend(archive: Any, seed: int, rounds: int) -> int:
    """Upsert overlapping batches of the same 30 keys, in random orders."""
    rng = random.Random(seed)
    for round_ in range(rounds):
        keys = list(range(30))
        rng.shuffle(keys)
        archive.update({k: (seed, round_) for k in keys[:15]})
        archive[keys[0]] = (seed, round_)
        if round_ % 5 == 0:
            archive.add(("once", round_), seed)
    return seed


def call_dilled(blob: bytes, values: list[Any]) -> tuple[list[Any], int]:
    """Unpickle a function with dill (as sent by value) and call it; also return the pid."""
    import dill

    function = dill.loads(blob)
    return [function(v) for v in values], os.getpid()
