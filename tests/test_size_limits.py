"""Size limits: ``getsizeof=`` for the in-memory cache, ``size_limit=`` on persistent archives."""

from __future__ import annotations

import logging
import os

import pytest

import klepto
from klepto.archives import dict_archive, dir_archive, file_archive, sqltable_archive
from klepto.archives._sizelimit import LOW_WATER


# --- getsizeof -----------------------------------------------------------------------------
def test_maxsize_bounds_the_total_size():
    @klepto.lru_cache(maxsize=10, getsizeof=len)
    def word(n):
        return "x" * n

    for n in (3, 3, 4, 2):  # 3 + 4 + 2 = 9
        word(n)
    assert word.info().size == 9 and sorted(word.__cache__()) == [(2,), (3,), (4,)]
    word(5)  # 14 > 10: least recently used out (3, then 4) -> 2 + 5
    assert sorted(word.__cache__()) == [(2,), (5,)]
    assert word.info().size == 7


def test_a_result_larger_than_maxsize_is_returned_but_not_kept():
    @klepto.lru_cache(maxsize=10, getsizeof=len)
    def word(n):
        return "y" * n

    word(2)
    assert word(50) == "y" * 50
    assert (50,) not in word.__cache__() and word.info().size <= 10


def test_evicted_results_go_to_the_archive():
    store = dict_archive("sized", cached=False)

    @klepto.lru_cache(maxsize=6, getsizeof=len, cache=dict_archive("front"))
    def word(n):
        return "z" * n

    word.archive(store)
    for n in (3, 3, 2, 4):
        word(n)
    assert (3,) in store  # evicted with a dump, as in the classic algorithm
    assert word(3) == "zzz" and word.info().load == 1


def test_sizes_resync_after_changes_behind_the_memo():
    @klepto.lfu_cache(maxsize=100, getsizeof=len)
    def word(n):
        return "w" * n

    for n in range(1, 10):
        word(n)
    word.__cache__().pop((9,))
    assert word.info().size == sum(range(1, 9))
    word.clear()
    assert word.info().size == 0


def test_getsizeof_needs_memory():
    with pytest.raises(TypeError, match="in-memory"):
        klepto.lru_cache(getsizeof=len, cache=dict_archive("raw", cached=False))(len)


# --- size_limit on archives ----------------------------------------------------------------
def _archive(kind, tmp_path, limit):
    if kind == "dir":
        return dir_archive(str(tmp_path / "d"), cached=False, size_limit=limit)
    if kind == "file":
        return file_archive(str(tmp_path / "f.pkl"), cached=False, size_limit=limit)
    return sqltable_archive(f"sqlite:///{tmp_path}/s.db", cached=False, size_limit=limit)


def _stored_bytes(archive):
    return sum(size for _, size, _ in archive._entry_sizes())


@pytest.mark.parametrize("kind", ["dir", "file", "sqlite"])
def test_size_limit_evicts_the_oldest_writes(kind, tmp_path, caplog):
    limit = 20_000
    archive = _archive(kind, tmp_path, limit)
    value = os.urandom(1000)  # incompressible: about 1 KiB per entry
    with caplog.at_level(logging.INFO, logger="klepto.archives"):
        for i in range(60):
            archive[i] = value
    assert _stored_bytes(archive) <= limit
    keys = sorted(archive)
    assert keys == list(range(keys[0], 60))  # the newest survive, oldest went first
    assert len(keys) >= int(limit * LOW_WATER / 1100)
    evictions = [r for r in caplog.records if "size_limit" in r.getMessage()]
    assert evictions and all(r.levelno == logging.INFO for r in evictions)


@pytest.mark.parametrize("kind", ["dir", "file", "sqlite"])
def test_size_limit_measures_rarely(kind, tmp_path, monkeypatch):
    archive = _archive(kind, tmp_path, 50_000)
    scans = []
    measure = type(archive)._entry_sizes

    def counting(self):
        scans.append(1)
        return measure(self)

    monkeypatch.setattr(type(archive), "_entry_sizes", counting)
    for i in range(300):
        archive[i] = os.urandom(500)
    assert len(scans) <= 30  # amortized: a scan per ~10% of the limit written, not per write


def test_unlimited_by_default(tmp_path):
    archive = dir_archive(str(tmp_path / "free"), cached=False)
    assert archive.policies() == {"expire": None, "size_limit": None}
    for i in range(20):
        archive[i] = b"x" * 1000
    assert len(archive) == 20


def test_update_counts_every_item(tmp_path):
    archive = dir_archive(str(tmp_path / "u"), cached=False, size_limit=5000)
    archive.update({i: os.urandom(1000) for i in range(20)})
    assert _stored_bytes(archive) <= 5000


def test_clear_starts_the_count_again(tmp_path):
    archive = file_archive(str(tmp_path / "c.pkl"), cached=False, size_limit=8000)
    for i in range(20):
        archive[i] = os.urandom(1000)
    archive.clear()
    archive["after"] = os.urandom(1000)
    assert list(archive) == ["after"]


def test_invalid_size_limit(tmp_path):
    for bad in (-1, 1.5, "10"):
        with pytest.raises(ValueError):
            dir_archive(str(tmp_path / "bad"), cached=False, size_limit=bad)
