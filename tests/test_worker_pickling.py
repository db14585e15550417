"""File and directory archives, and functions memoized into them, sent to worker processes.

They pickle by reference (location and settings, never the entries); each worker opens the
same storage, and what one process writes the others read.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import dill
import pytest

from klepto import inf_cache
from klepto.archives import dir_archive, file_archive
from tests.services._stores import worker_context
from tests.services._workers import call_dilled, read_keys, write_range

FACTORIES = {"file": file_archive, "dir": dir_archive}


@pytest.fixture(scope="module")
def workers():
    with ProcessPoolExecutor(2, mp_context=worker_context()) as pool:
        yield pool


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_archive_travels_by_reference(kind, tmp_path, workers):
    archive = FACTORIES[kind](str(tmp_path / "store"), cached=False)
    archive.update({i: i * i for i in range(300)})
    assert len(pickle.dumps(archive)) < 1000  # not the 300 entries
    list(workers.map(write_range, [archive, archive], [1000, 2000], [30, 30]))
    seen = list(workers.map(read_keys, [archive, archive], [[5, 1000], [2029, 299]]))
    assert seen == [{5: 25, 1000: 10**6}, {2029: 2029**2, 299: 299**2}]
    assert len(archive) == 360


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_memoized_function_carries_its_archive_by_reference(kind, tmp_path, workers):
    archive = FACTORIES[kind](str(tmp_path / "memo"), cached=False)

    @inf_cache(cache=archive)
    def cube(x):
        return x**3

    cube(2)
    small = len(dill.dumps(cube))
    archive.update({i: i for i in range(300)})
    blob = dill.dumps(cube)
    assert len(blob) < small + 200  # the archive's entries did not come along
    ((values, _),) = list(workers.map(call_dilled, [blob], [[2, 3]]))
    assert values == [8, 27]
    assert archive[(3,)] == 27  # computed in the worker, stored in the shared archive
