"""The benchmark harness's scratch directories and W3's file-per-key floor (no timing)."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks import _floor, _harness, w3_archives
from benchmarks._harness import Result


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


def test_only_the_directory_archive_is_shown_against_the_floor():
    def row(metric: str, impl: str, peer: str | None = None) -> Result:
        return Result("W3", metric, impl, 2.0, "us", peer)

    results = [
        row("write at 1k", "klepto.dir_archive", w3_archives.PEER),
        row("write at 1k", "klepto.file_archive", w3_archives.PEER),
        row("write at 1k", _floor.NAME),
        row("open+first lookup", "klepto.dir_archive", w3_archives.PEER),
        row("open+first lookup", _floor.NAME),
    ]
    extra = w3_archives._against_floor(results)
    assert [(r.metric, r.impl, r.peer, r.target) for r in extra] == [
        ("write at 1k", "klepto.dir_archive", _floor.NAME, None)
    ]
