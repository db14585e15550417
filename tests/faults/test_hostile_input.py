"""Hostile input against the stores the per-store tests do not cover yet (the directory
archive's are in tests/test_dir_security.py, SQL names in tests/test_sql_safety.py):

* E1 hostile keys on file and SQLite archives: every key round-trips, keys stay distinct,
  nothing outside the store changes;
* E3 unhashable and look-alike arguments memoized into persistent archives: right results,
  distinct entries, nothing partial;
* E5 symlinks planted at every predictable name beside a store (lock files, temp names,
  the store itself): the target's bytes never change;
* E6 foreign files in the directories a store owns: never listed, never a crash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.faults._stores import ADAPTERS, location
from tests.test_dir_security import HOSTILE_KEYS, snapshot

pytestmark = pytest.mark.faults


def _archive(store: str, where: Path):
    from klepto import archives

    if store == "sqlite":
        return archives.sqltable_archive(f"sqlite:///{where}?table=memo", cached=False)
    return archives.file_archive(str(where), cached=False)


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_hostile_keys_round_trip(tmp_path, campaign, store):
    """E1: each hostile key is stored as itself, distinct from the others, and nothing
    outside the store's own files is created, changed or deleted."""
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.txt").write_text("keep me")
    where = tmp_path / "store" / "memo.db"
    where.parent.mkdir()
    before = snapshot(str(tmp_path), str(where.parent))
    archive = _archive(store, where)
    for n, key in enumerate(HOSTILE_KEYS):
        archive[key] = n
    problems = [f"{key!r}" for n, key in enumerate(HOSTILE_KEYS) if archive.get(key) != n]
    reopened = _archive(store, where)
    if len(reopened) != len(HOSTILE_KEYS):
        problems.append(f"{len(reopened)} keys listed, {len(HOSTILE_KEYS)} written")
    if snapshot(str(tmp_path), str(where.parent)) != before:
        problems.append("something outside the store changed")
    campaign.record("E1", store, len(HOSTILE_KEYS), problems)
    assert problems == []


# --- E3 -----------------------------------------------------------------------------------
def _calls(decorated) -> list:
    return [
        decorated(1, 23),
        decorated(12, 3),
        decorated(1, 1),
        decorated(1.0, 1),
        decorated(True, 1),
        decorated([1, 2], {"a": {3}}),
        decorated([1, 2], {"a": {3}}),
        decorated((1, 2), {"a": frozenset({3})}),
        decorated(float("nan"), 0),
        decorated(-0.0, 0),
    ]


@pytest.mark.parametrize("store", ["file", "dir", "sqlite"])
def test_memoized_lookalike_and_unhashable_arguments(tmp_path, campaign, store):
    """E3 through a persistent archive: ``f(1, 23)`` and ``f(12, 3)`` never share an entry,
    unhashable arguments work, and a second process-like reopen gives the same answers."""
    from klepto import inf_cache

    def plain(x, y):
        return repr((x, y))

    where = location(store, tmp_path)
    archive = ADAPTERS[store].open(where)
    decorated = inf_cache(cache=archive)(plain)
    expected = [
        "(1, 23)",
        "(12, 3)",
        "(1, 1)",
        "(1, 1)",
        "(1, 1)",  # equal numbers are equal keys (documented), the result is the first's
        "([1, 2], {'a': {3}})",
        "([1, 2], {'a': {3}})",
        "((1, 2), {'a': frozenset({3})})",
        "(nan, 0)",
        "(-0.0, 0)",
    ]
    first = _calls(decorated)
    again = _calls(inf_cache(cache=ADAPTERS[store].open(where))(plain))
    problems = [f"call {i}: {a!r}" for i, (a, b) in enumerate(zip(first, expected)) if a != b]
    problems += [f"reopened call {i}" for i, (a, b) in enumerate(zip(again, first)) if a != b]
    if first[0] == first[1]:
        problems.append("f(1, 23) and f(12, 3) share an entry")
    campaign.record("E3", store, len(expected), problems)
    assert problems == []


# --- E5 -----------------------------------------------------------------------------------
def _predictable_names(name: str, where: str) -> list[str]:
    paths = ADAPTERS[name].paths(where)
    extra = [where + ".tmp", where + ".new", where + ".klepto-tmp", where + "-journal"]
    return [p for p in dict.fromkeys(paths[1:] + extra) if p != where]


@pytest.mark.parametrize("name", ["record", "file", "sqlite", "oplog", "checkpoint"])
def test_planted_symlinks_never_clobber_their_target(tmp_path, campaign, name):
    """E5: symlinks at every predictable name beside the store point to a target file; the
    store is created and written; the target's bytes never change."""
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    folder = tmp_path / "store"
    folder.mkdir()
    where = location(name, folder)
    for path in _predictable_names(name, where):
        if not path.endswith(os.sep) and not os.path.isdir(path):
            os.symlink(target, path)
    adapter = ADAPTERS[name]
    outcome = "refused"
    try:
        handle = adapter.open(where)
        for i in range(20):
            adapter.put(handle, i, "x" * 100)
        adapter.close(handle)
        outcome = "written"
    except Exception:  # refusing to follow a planted link (any clear error) is correct
        outcome = "refused"
    problems = []
    if hashlib.sha256(target.read_bytes()).hexdigest() != digest:
        problems.append(f"the target was changed ({outcome})")
    campaign.record("E5", name, 1, problems)
    assert problems == []


@pytest.mark.parametrize("name", ["record", "file", "sqlite", "oplog"])
def test_store_file_that_is_a_symlink_is_not_written_through(tmp_path, campaign, name):
    """E5: the store's own name is a symlink to a file the attacker wants clobbered."""
    target = tmp_path / "passwd-copy"
    target.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    folder = tmp_path / "store"
    folder.mkdir()
    where = location(name, folder)
    os.symlink(target, where)
    adapter = ADAPTERS[name]
    try:
        handle = adapter.open(where)
        adapter.put(handle, 0, "x")
        adapter.close(handle)
    except Exception:  # refusing the link (any clear error) is what we hope for
        pass
    problems = []
    if target.read_bytes() != b"root:x:0:0:root:/root:/bin/bash\n":
        problems.append("the symlink's target was written through")
    campaign.record("E5", f"{name} (store is a link)", 1, problems)
    assert problems == []


# --- E6 -----------------------------------------------------------------------------------
def _plant_foreign(folder: Path) -> None:
    (folder / "K_foo").mkdir()
    (folder / "random.bin").write_bytes(os.urandom(100))
    (folder / "output.pkl").write_bytes(b"")
    (folder / ("K_" + "0" * 32)).mkdir()


@pytest.mark.parametrize("name", ["dir", "branches", "checkpoint"])
def test_foreign_files_are_never_listed(tmp_path, campaign, name):
    """E6: junk in the directories a store owns is not listed, and reading never crashes."""
    adapter = ADAPTERS[name]
    where = location(name, tmp_path)
    handle = adapter.open(where)
    for i in range(5):
        adapter.put(handle, i, f"v{i}")
    adapter.close(handle)
    for folder in {Path(p) for p in adapter.paths(where) if os.path.isdir(p)}:
        _plant_foreign(folder)
    problems = []
    try:
        state = adapter.state(where)
        if state != {i: f"v{i}" for i in range(5)}:
            problems.append(f"state {state!r}")
    except Exception as exc:  # a crash while reading is what the item forbids
        problems.append(f"{type(exc).__name__}: {exc}")
    campaign.record("E6", name, 1, problems)
    assert problems == []
