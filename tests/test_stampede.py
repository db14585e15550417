"""Stampede protection: concurrent callers of one missing key compute it once (threads).

Processes sharing an archive are tested in tests/faults/test_stampede_processes.py.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

import klepto
from klepto import safe
from klepto._stampede import NOBODY
from klepto.archives import dict_archive, dir_archive

THREADS = 16
JOIN_TIMEOUT = 60
DECORATORS = (
    klepto.inf_cache,
    klepto.lfu_cache,
    klepto.lru_cache,
    klepto.mru_cache,
    klepto.rr_cache,
    safe.inf_cache,
    safe.lru_cache,
)


def together(target, count=THREADS):
    """Run ``target(index)`` in ``count`` threads released at once; return their results."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def body(index):
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[index] = target(index)
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("decorator", DECORATORS, ids=lambda d: f"{d.__module__}.{d.__name__}")
def test_one_computation_for_many_threads(decorator):
    calls = []

    @decorator()
    def slow(x):
        calls.append(x)
        time.sleep(0.2)
        return [x, "result"]

    results = together(lambda _: slow(7))
    assert calls == [7]
    assert all(result == [7, "result"] for result in results)
    info = slow.info()
    assert (info.hit, info.miss, info.load) == (THREADS - 1, 1, 0)


def test_different_keys_are_computed_at_the_same_time():
    inside = threading.Barrier(4)  # breaks unless all four computations overlap

    @klepto.lru_cache()
    def meet(x):
        inside.wait(timeout=JOIN_TIMEOUT)
        return x

    assert together(meet, count=4) == [0, 1, 2, 3]
    assert meet.info().miss == 4


def test_a_failed_leader_hands_over_to_a_waiter():
    calls = []

    @klepto.lru_cache()
    def flaky(x):
        calls.append(x)
        time.sleep(0.1)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return x

    def call(_):
        try:
            return flaky(1)
        except RuntimeError:
            return "failed"

    results = together(call, count=8)
    assert results.count("failed") == 1  # the leader's error is its own
    assert results.count(1) == 7
    assert len(calls) == 2  # one waiter computed it next; the others were served


def test_opt_out_computes_in_every_thread():
    calls = []
    start = threading.Barrier(4)

    @klepto.lru_cache(stampede=False)
    def slow(x):
        calls.append(x)
        start.wait(timeout=JOIN_TIMEOUT)  # all four inside at once: nobody waited
        return x

    assert together(lambda _: slow(3), count=4) == [3, 3, 3, 3]
    assert len(calls) == 4


def test_thread_mode_and_invalid_modes():
    @klepto.lru_cache(stampede="thread")
    def f(x):
        return x

    assert f(1) == 1 and f.__memo__.locking is None
    with pytest.raises(ValueError, match="stampede"):
        klepto.lru_cache(stampede="sometimes")


def test_a_function_calling_itself_with_its_own_key_does_not_wait_for_itself():
    depth = []

    @klepto.lru_cache()
    def selfish(x):
        depth.append(x)
        if len(depth) < 3:
            return selfish(x)  # same key, as classic klepto: recomputed, never a deadlock
        return x

    assert selfish(5) == 5
    assert depth == [5, 5, 5]


def test_no_cache_with_an_archive_loads_what_the_leader_wrote(tmp_path):
    calls = []
    store = dir_archive(str(tmp_path / "store"), cached=False)

    @klepto.no_cache(cache=store)
    def slow(x):
        calls.append(x)
        time.sleep(0.2)
        return x * 2

    assert together(lambda _: slow(4), count=8) == [8] * 8
    assert calls == [4]
    info = slow.info()
    assert info.miss == 1 and info.hit + info.load == 7
    assert dict(store.items()) == {(4,): 8}


def test_uncontended_misses_leave_nothing_behind():
    @klepto.lru_cache(maxsize=2)
    def f(x):
        return x

    for x in range(10):
        f(x)
    memo = f.__memo__
    assert memo._inflight == set() and memo._waiters == 0
    assert memo._leading is NOBODY


def test_a_raising_function_releases_its_key():
    @klepto.lru_cache()
    def boom(x):
        raise ValueError(x)

    for _ in range(3):
        with pytest.raises(ValueError):
            boom(1)
    assert boom.info().miss == 0 and not boom.__memo__.flights._computing((1,))


# --- Archive.lock(key) ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dict", "dir"])
def test_archive_lock_excludes_threads_per_key(kind, tmp_path):
    archive = (
        dict_archive(cached=False)
        if kind == "dict"
        else dir_archive(str(tmp_path / "locks"), cached=False)
    )
    assert archive.locks_processes is (kind == "dir")
    inside, overlaps = [], []

    def hold(index):
        key = "same" if index < 4 else f"other-{index}"
        with archive.lock(key):
            if key == "same":
                overlaps.append(len(inside))
                inside.append(index)
                time.sleep(0.02)
                inside.remove(index)
        return index

    together(hold, count=8)
    assert overlaps == [0, 0, 0, 0]  # never two holders of one key


def test_lock_file_is_removed_with_the_archive(tmp_path):
    archive = dir_archive(str(tmp_path / "dropped"), cached=False)
    with archive.lock("k"):
        pass
    archive.__drop__()
    assert not (tmp_path / "dropped").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the fallback is the only lock elsewhere")
def test_whole_file_fallback_is_correct_too(tmp_path, monkeypatch):
    from klepto import _keylocks

    monkeypatch.setattr(_keylocks, "_OFD_SETLKW", None)
    locks = _keylocks.FileKeyLocks(tmp_path / "fallback.lock")
    inside, overlaps = [], []

    def hold(index):
        with locks.hold("k"):
            overlaps.append(len(inside))
            inside.append(index)
            time.sleep(0.01)
            inside.remove(index)

    together(hold, count=4)
    assert overlaps == [0, 0, 0, 0]
