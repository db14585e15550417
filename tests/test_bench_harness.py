"""The benchmarks' scratch directories, W3's growth sampling and its file-per-key floor."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks import _floor, _scratch, w3_archives


@pytest.fixture
def mark(tmp_path, monkeypatch):
    path = tmp_path / "deleted-mark"
    monkeypatch.setattr(_scratch, "DELETED_MARK", path)
    monkeypatch.setattr(_scratch, "_pending", [])  # this test's directories only
    monkeypatch.setenv("KLEPTO_BENCH_DIR", str(tmp_path))
    return path


def _sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(_scratch.time, "sleep", slept.append)
    return slept


def _aged(mark, seconds: float) -> None:
    mark.touch()
    then = time.time() - seconds
    os.utime(mark, (then, then))


def test_a_recent_mass_deletion_is_waited_out_to_its_end(mark, monkeypatch):
    _aged(mark, 30)
    slept = _sleeps(monkeypatch)
    _scratch.settle_file_system()
    assert len(slept) == 1
    assert _scratch.SETTLE_SECONDS - 31 < slept[0] <= _scratch.SETTLE_SECONDS - 30


def test_the_wait_covers_the_kernels_longest_window():
    assert _scratch.SETTLE_SECONDS > 360  # recently_deleted(): 60 s, 360 s while dirty


def test_a_mark_in_the_future_waits_the_whole_time_and_no_more(mark, monkeypatch):
    _aged(mark, -3600)  # the clock was set back
    slept = _sleeps(monkeypatch)
    _scratch.settle_file_system()
    assert slept == [_scratch.SETTLE_SECONDS]


def test_an_old_deletion_or_none_is_not_waited_for(mark, monkeypatch):
    slept = _sleeps(monkeypatch)
    _scratch.settle_file_system()  # no mark at all
    _aged(mark, _scratch.SETTLE_SECONDS + 1)
    _scratch.settle_file_system()
    assert slept == []


def test_scratch_directories_outlive_their_workload_and_go_at_the_end(mark, monkeypatch, tmp_path):
    _sleeps(monkeypatch)
    monkeypatch.setattr(_scratch, "MASS_DELETION", 3)
    with _scratch.bench_dir(".w-") as first:
        (first / "entry").write_bytes(b"x")
        assert first.parent == tmp_path
    with _scratch.bench_dir(".w-") as second:
        for name in "ab":
            (second / name).write_bytes(b"x")
    assert first.exists() and second.exists()  # no deletion between workloads
    assert not mark.exists()
    _scratch.delete_scratch()
    assert not first.exists() and not second.exists()
    assert time.time() - mark.stat().st_mtime < 60  # three files: a mass deletion here


def test_a_small_deletion_leaves_no_mark(mark, monkeypatch):
    with _scratch.bench_dir(".w-", settle=False) as base:
        (base / "entry").write_bytes(b"x")
    _scratch.delete_scratch()
    assert not base.exists() and not mark.exists()


def test_bench_dir_settles_first_unless_told_not_to(mark, monkeypatch):
    slept = _sleeps(monkeypatch)
    mark.touch()
    with _scratch.bench_dir(".w-", settle=False):
        assert slept == []
    with _scratch.bench_dir(".w-"):
        assert len(slept) == 1
    _scratch.delete_scratch()


def test_an_unwritable_mark_never_loses_a_run(mark, monkeypatch):
    monkeypatch.setattr(_scratch, "MASS_DELETION", 1)

    def refuse(*args, **kwargs):
        raise PermissionError("another user's mark")

    with _scratch.bench_dir(".w-", settle=False) as base:
        (base / "a").write_bytes(b"x")
    monkeypatch.setattr(type(mark), "touch", refuse)
    _scratch.delete_scratch()
    assert not base.exists()


def test_the_floor_round_trips_and_leaves_no_temporary_file(tmp_path):
    store = _floor.FilePerKey(str(tmp_path / "floor"))
    store["key-1"] = {"a": 1}
    store["key-1"] = {"a": 2}
    assert store["key-1"] == {"a": 2}
    assert sorted(os.listdir(tmp_path / "floor")) == ["key-1"]


def test_growth_hands_the_readers_its_largest_store_with_every_key(tmp_path):
    stores = {"klepto.file_archive": w3_archives.STORES["klepto.file_archive"]}
    grown = w3_archives._growth(stores, tmp_path, [3, 10], batch=2, repeat=3)
    assert set(grown["costs"]) == {("klepto.file_archive", 3), ("klepto.file_archive", 10)}
    held = grown["filled"]["klepto.file_archive"]
    assert held == 10 + 2 * (3 + w3_archives.GROWTH_WARMUP)
    store = stores["klepto.file_archive"](grown["paths"]["klepto.file_archive"])
    try:
        assert len(store) == held
        assert store[w3_archives._key(held - 1)] == w3_archives.VALUE
    finally:
        store.close()
