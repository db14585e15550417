"""Shared archives and memoized functions sent to worker processes (by reference).

An archive pickles as its location and settings, never its entries; a worker process opens
its own connection on first use. A memoized function defined in a module travels by name
(the worker imports the module, which opens the archive); one sent by value (dill, as for
a function defined interactively) carries its raw shared archive by reference too.
"""

from __future__ import annotations

import collections
import importlib
import multiprocessing
import os
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor

import dill
import pytest

from klepto import inf_cache
from tests.services._stores import (
    BACKENDS,
    location,
    make_shared,
    worker_context,
)
from tests.services._workers import call_dilled, call_with, read_keys, write_range

pytestmark = pytest.mark.services

WORKERS = worker_context()
# Workers that read the environment at start (a forkserver keeps the one it started with).
SPAWN = multiprocessing.get_context("spawn")


@pytest.mark.parametrize("backend", BACKENDS)
def test_archive_travels_by_reference(backend, request):
    archive = make_shared(backend, request)
    archive.update({i: i * i for i in range(300)})
    assert len(pickle.dumps(archive)) < 1000  # not the 300 entries
    with ProcessPoolExecutor(2, mp_context=WORKERS) as workers:
        list(workers.map(write_range, [archive, archive], [1000, 2000], [30, 30]))
        seen = list(workers.map(read_keys, [archive, archive], [[5, 1000], [2029, 299]]))
    assert seen == [{5: 25, 1000: 10**6}, {2029: 2029**2, 299: 299**2}]
    assert len(archive) == 360


def _env_module(monkeypatch, memo: str, marks: str):
    monkeypatch.setenv("KLEPTO_TEST_MEMO", memo)
    monkeypatch.setenv("KLEPTO_TEST_MARKS", marks)
    name = "tests.services._envmemo"
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_module_function_travels_by_name(backend, request, monkeypatch):
    module = _env_module(
        monkeypatch, location(backend, request), location(backend, request, "_marks")
    )
    blob = pickle.dumps(module.slow_square)
    assert b"_envmemo" in blob and len(blob) < 200  # a name, not a cache
    calls = [[1, 2, 3, 4], [4, 3, 2, 1], [2, 5]]
    with ProcessPoolExecutor(2, mp_context=SPAWN) as workers:
        results = list(workers.map(call_with, [module.slow_square] * 3, calls))
    assert results == [[v * v for v in values] for values in calls]
    assert module.results.__asdict__() == {(v,): v * v for v in range(1, 6)}
    assert module.slow_square(5) == 25  # the caller sees the workers' results
    computed = collections.Counter(x for x, _ in module.marks)
    assert sorted(computed) == [1, 2, 3, 4, 5]
    assert computed == dict.fromkeys(range(1, 6), 1)  # the stampede lock spans processes


@pytest.mark.parametrize("backend", ["postgresql", "redis"])
def test_function_sent_by_value_carries_its_archive_by_reference(backend, request):
    archive = make_shared(backend, request)

    @inf_cache(cache=archive)
    def cube(x):
        return x**3

    cube(2)
    small = len(dill.dumps(cube))
    archive.update({i: i for i in range(1000)})
    blob = dill.dumps(cube)
    assert len(blob) < small + 200  # the archive's entries did not come along
    with ProcessPoolExecutor(1, mp_context=WORKERS) as workers:
        ((values, pid),) = list(workers.map(call_dilled, [blob], [[2, 3]]))
    assert values == [8, 27] and pid != os.getpid()
    assert archive[(3,)] == 27  # computed in the worker, stored in the shared archive
