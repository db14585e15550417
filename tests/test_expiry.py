"""Expiry: ``ttl=`` on the decorators, ``expire=`` on archives, with a fake clock.

Deadlines are absolute readings of a timer, stored with the entry, so they survive a new
process: a result loaded from an archive keeps its original deadline.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap

import pytest

import klepto
from klepto import safe
from klepto.archives import (
    cache,
    dict_archive,
    dir_archive,
    file_archive,
    sqltable_archive,
)
from klepto.archives._expiry import Expiring
from klepto.tools import CacheInfo


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- decorators ------------------------------------------------------------------------------
DECORATORS = (
    klepto.lru_cache,
    klepto.lfu_cache,
    klepto.mru_cache,
    klepto.rr_cache,
    klepto.inf_cache,
    safe.lru_cache,
    safe.inf_cache,
)


@pytest.mark.parametrize("decorator", DECORATORS, ids=lambda d: f"{d.__module__}.{d.__name__}")
def test_expired_results_are_misses(decorator):
    clock, calls = Clock(), []

    @decorator(ttl=10, timer=clock)
    def f(x):
        calls.append(x)
        return x * 2

    assert f(1) == 2 and f(1) == 2
    clock.now += 9.9
    assert f(1) == 2
    clock.now += 0.2  # 10.1 s after the first call
    assert f(1) == 2
    assert calls == [1, 1]
    assert f.info() == CacheInfo(2, 2, 0, f.info().maxsize, 1)
    clock.now += 5
    assert f(1) == 2  # the recomputed result lives 10 s from its own computation
    assert calls == [1, 1]


def test_unhashable_arguments_expire_too():
    clock, calls = Clock(), []

    @klepto.lru_cache(ttl=5, timer=clock)
    def total(values):
        calls.append(1)
        return sum(values)

    assert total([1, 2]) == total([1, 2]) == 3
    clock.now += 6
    assert total([1, 2]) == 3
    assert len(calls) == 2


def test_expire_sweeps_memory():
    clock = Clock()

    @klepto.lru_cache(ttl=10, timer=clock)
    def f(x):
        return x

    for x in range(3):
        f(x)
    clock.now += 5
    f(3)
    clock.now += 6  # 0..2 expired, 3 not
    assert f.expire() == 3
    assert sorted(f.__cache__()) == [(3,)]
    assert f(3) == 3 and f.info().hit == 1


def test_no_ttl_means_no_deadlines():
    @klepto.lru_cache()
    def f(x):
        return x

    f(1)
    assert f.__cache__()._deadlines == {} and f.expire() == 0


def test_invalid_ttl():
    for bad in (0, -1, "10", True):
        with pytest.raises((ValueError, TypeError)):
            klepto.lru_cache(ttl=bad)(lambda x: x)


def test_no_cache_with_ttl_writes_deadlines_through():
    clock = Clock()
    store = dict_archive("through", cached=False, timer=clock)

    @klepto.no_cache(cache=store, ttl=10, timer=clock)
    def f(x):
        return x + 1

    assert f(1) == 2 and f(1) == 2
    assert store.get((1,), expire_time=True) == (2, clock.now + 10)
    clock.now += 11
    assert f(1) == 2
    assert f.info().miss == 2 and f.info().load == 1


def test_ttl_over_a_raw_archive_uses_the_archive_clock():
    clock = Clock()
    store = dict_archive("raw", cached=False, timer=clock)

    @klepto.lru_cache(cache=store, ttl=10)
    def f(x):
        return [x]

    f(1)
    assert store.get((1,), expire_time=True) == ([1], clock.now + 10)
    clock.now += 11
    assert (1,) not in store
    f(1)
    assert f.info().miss == 2


def test_a_loaded_result_keeps_its_original_deadline():
    clock = Clock()
    store = dict_archive("shared", cached=False, timer=clock)

    @klepto.lru_cache(ttl=10, timer=clock)
    def first(x):
        return x * 10

    first.archive(store)
    first(1)
    first.dump()
    assert store.get((1,), expire_time=True) == (10, 1010.0)

    clock.now += 6  # a "new process" starts later

    @klepto.lru_cache(ttl=10, timer=clock)
    def second(x):
        raise AssertionError("loaded, not computed")

    second.archive(store)
    assert second(1) == 10 and second.info().load == 1
    assert second.__cache__()._deadlines[(1,)] == 1010.0  # not 1016
    clock.now += 5  # 1011: expired by its original deadline
    with pytest.raises(AssertionError, match="loaded, not computed"):
        second(1)


def test_persisted_expiry_survives_a_new_process(tmp_path):
    """A real second process reads the deadline the first one wrote (time.time based)."""
    location = str(tmp_path / "memo")
    script = textwrap.dedent(
        f"""
        import klepto
        from klepto.archives import dir_archive
        store = dir_archive({location!r}, cached=False)

        @klepto.lru_cache(cache=store, ttl=3600)
        def f(x):
            return x + 1

        f(1)
        print(store.get((1,), expire_time=True)[1])
        """
    )
    written = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert written.returncode == 0, written.stderr
    deadline = float(written.stdout)
    reread = dir_archive(location, cached=False)
    assert reread.get((1,), expire_time=True) == (2, deadline)

    @klepto.lru_cache(ttl=3600)
    def g(x):
        raise AssertionError("served from the archive")

    g.archive(reread)
    assert g(1) == 2
    assert g.__cache__()._deadlines[(1,)] == deadline


# --- archives ------------------------------------------------------------------------------
def _kinds(tmp_path, clock, **options):
    return {
        "dict": dict_archive("d", cached=False, timer=clock, **options),
        "dir": dir_archive(str(tmp_path / "dir"), cached=False, timer=clock, **options),
        "file": file_archive(str(tmp_path / "file.pkl"), cached=False, timer=clock, **options),
        "sqlite": sqltable_archive(
            f"sqlite:///{tmp_path}/db.sqlite", cached=False, timer=clock, **options
        ),
    }


KINDS = ["dict", "dir", "file", "sqlite"]


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def test_per_item_expiry_on_every_archive(kind, tmp_path):
    clock = Clock()
    archive = _kinds(tmp_path, clock)[kind]
    archive.set("short", 1, expire=5)
    archive.set("long", 2, expire=50)
    archive["plain"] = 3
    assert archive.get("short", expire_time=True) == (1, 1005.0)
    assert archive.get("plain", expire_time=True) == (3, None)
    assert archive.get("absent", "d", expire_time=True) == ("d", None)
    clock.now += 10
    assert "short" not in archive and archive.get("short") is None
    with pytest.raises(KeyError):
        archive["short"]
    assert archive["long"] == 2 and "long" in archive
    assert len(archive) == 3  # counted until swept
    assert dict(archive.items()) == {"long": 2, "plain": 3}
    assert sorted(archive.values()) == [2, 3]
    assert archive.__asdict__() == {"long": 2, "plain": 3}
    assert archive.expire() == 1
    assert len(archive) == 2 and sorted(archive) == ["long", "plain"]


def test_expired_entries_read_as_missing_in_pop_popitem_setdefault(kind, tmp_path):
    clock = Clock()
    archive = _kinds(tmp_path, clock)[kind]
    archive.set("a", 1, expire=1)
    archive.set("b", 2, expire=1)
    clock.now += 2
    assert archive.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        archive.pop("b")
    archive.set("c", 3, expire=1)
    clock.now += 2
    assert archive.setdefault("c", 30) == 30 and archive["c"] == 30
    assert archive.popitem() == ("c", 30)
    archive.set("d", 4, expire=1)
    clock.now += 2
    with pytest.raises(KeyError):
        archive.popitem()  # the expired entry is removed on the way
    assert len(archive) == 0


def test_archive_wide_default(kind, tmp_path):
    clock = Clock()
    archive = _kinds(tmp_path, clock, expire=10)[kind]
    assert archive.expire_default == 10
    archive["a"] = 1
    archive.update({"b": 2})
    archive.set("c", 3, expire=math.inf)  # never expires
    archive.set("d", 4, expire=100)
    clock.now += 11
    assert archive.__asdict__() == {"c": 3, "d": 4}


def test_invalid_expire_values():
    with pytest.raises(ValueError):
        dict_archive(cached=False, expire=0)
    with pytest.raises(TypeError, match="size_limit"):
        dict_archive(cached=False, size_limit=100)


def test_policies_travel_with_pickles(tmp_path):
    archive = dir_archive(str(tmp_path / "p"), cached=False, expire=30, size_limit=10**6)
    copy = pickle.loads(pickle.dumps(archive))
    assert copy.policies() == {"expire": 30.0, "size_limit": 10**6}
    memory = pickle.loads(pickle.dumps(dict_archive("m", cached=False, expire=5)))
    assert memory.expire_default == 5.0


def test_reopened_archive_sees_the_deadline(tmp_path):
    clock = Clock()
    archive = file_archive(str(tmp_path / "f.pkl"), cached=False, timer=clock)
    archive.set("k", "v", expire=20)
    again = file_archive(str(tmp_path / "f.pkl"), cached=False, timer=clock)
    assert again.get("k", expire_time=True) == ("v", 1020.0)


def test_safe_serializer_stores_envelopes(tmp_path):
    clock = Clock()
    archive = dir_archive(str(tmp_path / "safe"), cached=False, serializer="safe", timer=clock)
    archive.set((1, "x"), {"v": [1, 2]}, expire=5)
    again = dir_archive(str(tmp_path / "safe"), cached=False, timer=clock)
    assert again.get((1, "x"), expire_time=True) == ({"v": [1, 2]}, 1005.0)


def test_literal_archives_cannot_store_envelopes(tmp_path):
    archive = dir_archive(str(tmp_path / "lit"), cached=False, serialized=False)
    with pytest.raises((TypeError, ValueError)):
        archive.set("k", 1, expire=5)


# --- the cache front -----------------------------------------------------------------------
def test_front_keeps_deadlines_beside_plain_values():
    clock = Clock()
    front = dict_archive("front", timer=clock)
    front.set("a", 1, expire=5)
    front["b"] = 2
    assert type(front).__name__ == "_expiring_cache" and isinstance(front, cache)
    assert dict.__getitem__(front, "a") == 1  # memory holds the plain value
    front.dump()
    assert front.archive.get("a", expire_time=True) == (1, 1005.0)
    clock.now += 6
    assert "a" not in front and front.get("a") is None and front.get("b") == 2
    with pytest.raises(KeyError):
        front["a"]
    assert front.expire() == 2  # memory and backend
    assert dict(front) == {"b": 2} and front.archive.__asdict__() == {"b": 2}


def test_front_over_a_backend_with_a_default():
    clock = Clock()
    front = dict_archive("defaulted", timer=clock, expire=10)
    front["a"] = 1
    assert front._deadlines == {"a": 1010.0}
    front.dump()
    clock.now += 11
    front.load()
    assert "a" not in front


def test_front_pickles_its_deadlines():
    clock = Clock()
    front = dict_archive("pickled", timer=clock)
    front.set("a", 1, expire=5)
    copy = pickle.loads(pickle.dumps(front))
    assert copy._deadlines == {"a": 1005.0}
    assert type(copy).__name__ == "_expiring_cache"


def test_envelope_equality_and_repr():
    assert Expiring(1, 2.0) == Expiring(1, 2) and Expiring(1, 2) != Expiring(1, 3)
    assert repr(Expiring("v", 5)) == "Expiring('v', deadline=5.0)"
