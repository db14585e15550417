"""The benchmark harness's scratch directories and W3's file-per-key floor (no timing)."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks import _floor, _harness


@pytest.fixture
def mark(tmp_path, monkeypatch):
    path = tmp_path / "deleted-mark"
    monkeypatch.setattr(_harness, "DELETED_MARK", path)
    monkeypatch.setenv("KLEPTO_BENCH_DIR", str(tmp_path))
    return path


def _sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(_harness.time, "sleep", slept.append)
    return slept


def test_a_fresh_deletion_is_waited_out(mark, monkeypatch):
    mark.touch()
    slept = _sleeps(monkeypatch)
    _harness.settle_file_system()
    assert len(slept) == 1 and 0 < slept[0] <= _harness.SETTLE_SECONDS


def test_an_old_deletion_or_none_is_not_waited_for(mark, monkeypatch):
    slept = _sleeps(monkeypatch)
    _harness.settle_file_system()  # no mark at all
    mark.touch()
    old = time.time() - _harness.SETTLE_SECONDS - 1
    os.utime(mark, (old, old))
    _harness.settle_file_system()
    assert slept == []


def test_bench_dir_deletes_its_stores_and_marks_only_mass_deletions(mark, monkeypatch, tmp_path):
    _sleeps(monkeypatch)
    monkeypatch.setattr(_harness, "MASS_DELETION", 3)
    with _harness.bench_dir(".w-") as base:
        (base / "store").mkdir()
        (base / "store" / "entry").write_bytes(b"x")
        assert base.parent == tmp_path
    assert not base.exists()
    assert not mark.exists()  # one file: nothing to wait for
    with _harness.bench_dir(".w-") as base:
        for name in "abc":
            (base / name).write_bytes(b"x")
    assert not base.exists()
    assert time.time() - mark.stat().st_mtime < 60


def test_the_floor_round_trips_and_leaves_no_temporary_file(tmp_path):
    store = _floor.FilePerKey(str(tmp_path / "floor"))
    store["key-1"] = {"a": 1}
    store["key-1"] = {"a": 2}
    assert store["key-1"] == {"a": 2}
    assert sorted(os.listdir(tmp_path / "floor")) == ["key-1"]
