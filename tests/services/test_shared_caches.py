"""Many processes memoizing into one shared archive on PostgreSQL, MariaDB and Redis.

Every process calls the same memoized function for the same keys, in orders of its own (and
all start on the same key, a certain stampede). The cache is the raw shared archive, so a
miss takes the archive's cross-process ``lock(key)`` (PostgreSQL advisory lock, MariaDB
``GET_LOCK``, Redis ``SET NX PX``) around "look again, compute, store". Required: every
result is right, no entry is lost, and every key was computed exactly once across all
processes (counted with marks the computations leave in a second archive).
"""

from __future__ import annotations

import collections

import pytest

from tests.services._stores import BACKENDS, make_shared, worker_context
from tests.services._workers import memoize_all, run_in_process

pytestmark = pytest.mark.services

PROCESSES = 8


def _run_all(cache, marks, keys, delay):
    """Run :func:`memoize_all` in ``PROCESSES`` spawned processes started together."""
    context = worker_context()
    queue = context.Queue()
    barrier = context.Barrier(PROCESSES)
    children = [
        context.Process(
            target=run_in_process,
            args=(queue, memoize_all, cache, marks, keys, seed, delay, barrier),
        )
        for seed in range(PROCESSES)
    ]
    for child in children:
        child.start()
    outcomes = [queue.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)
    errors = [text for status, text in outcomes if status != "ok"]
    assert not errors, errors
    return [result for _, result in outcomes]


def _check_shared_memo(backend, request, keys, delay):
    cache = make_shared(backend, request)
    marks = make_shared(backend, request, "_marks")
    expected = {x: x * x for x in keys}
    for results in _run_all(cache, marks, keys, delay):
        assert results == expected  # every process got every right result
    stored = cache.__asdict__()
    assert stored == {(x,): x * x for x in keys}  # 0 lost entries (the keys are arg tuples)
    computed = collections.Counter(x for x, _ in marks)
    duplicates = {x: n for x, n in computed.items() if n != 1}
    assert duplicates == {}  # 0 duplicate computations
    assert sorted(computed) == sorted(keys)
    assert len({pid for pid in marks.values()}) > 1  # the work was shared out


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_compute_each_key_once(backend, request):
    _check_shared_memo(backend, request, list(range(24)), delay=0.02)


@pytest.mark.full
@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_compute_each_key_once_full(backend, request):
    _check_shared_memo(backend, request, list(range(400)), delay=0.005)
