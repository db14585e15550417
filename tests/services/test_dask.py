"""The dask recipe of docs/distributed.rst: a memoized function on a LocalCluster of worker
processes, with a PostgreSQL-backed cache shared by all of them.

The function lives in a module the workers import (``tests/services/_envmemo.py``), so it
travels by name and every worker opens its own connection. Every distinct call is computed
once across all workers (marks counted in a second table) and every result is visible to
every worker and to the client.
"""

from __future__ import annotations

import collections
import importlib
import sys

import pytest

from tests.services._stores import location

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _env_module(monkeypatch, memo: str, marks: str):
    monkeypatch.setenv("KLEPTO_TEST_MEMO", memo)
    monkeypatch.setenv("KLEPTO_TEST_MARKS", marks)
    name = "tests.services._envmemo"
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def test_memoized_function_on_a_local_cluster(request, monkeypatch):
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask is not installed: pip install 'klepto[dask]'"
    )
    work = _env_module(
        monkeypatch, location("postgresql", request), location("postgresql", request, "_marks")
    )
    calls = list(range(12)) * 3  # every distinct call three times, on any worker
    with (
        distributed.LocalCluster(
            n_workers=3, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = client.map(work.slow_square, calls, pure=False)  # no dedup by dask
        results = client.gather(futures)
        again = client.gather(client.map(work.slow_square, range(12), pure=False))
    assert results == [x * x for x in calls]
    assert again == [x * x for x in range(12)]
    computed = collections.Counter(x for x, _ in work.marks)
    assert computed == dict.fromkeys(range(12), 1)  # once across all workers
    assert work.results.__asdict__() == {(x,): x * x for x in range(12)}
