"""The branching transaction log (klepto.logs.branches): API, guarantees, and regressions
for each bug of the classic design (TLog) -- each regression test is named after the bug."""

from __future__ import annotations

import pickle
import shutil
import tempfile
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from klepto.archives import cache, dict_archive, null_archive
from klepto.errors import ArchiveClosedError, CorruptArchiveError
from klepto.logs import (
    BranchInfo,
    BranchLog,
    ConflictError,
    Delete,
    Entry,
    KVView,
    Set,
    UnknownBranchError,
)
from tests import _branch_backends as backends
from tests._branch_backends import Crash, Wrapped


class FakeClock:
    """Nanoseconds that advance by ``step`` per call, or stay put, or are set by the test."""

    def __init__(self, start: int = 1_000, step: int = 10) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


@pytest.fixture(params=backends.params())
def storage(request, tmp_path):
    made = backends.Storage(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def tlog(storage, clock):
    return BranchLog(storage.open(), "test", clock=clock, index_every=4)


def reopen(storage, clock=None, **kwds):
    return BranchLog(storage.open(), "test", clock=clock or FakeClock(10**9), **kwds)


def keys(log, branch, **bounds):
    return [entry.txn.key for entry in log.replay(branch, **bounds)]


def values_of(commits):
    return [tuple(t.key for t in commit.txns) for commit in commits]


# --- basic API ------------------------------------------------------------------------------
def test_push_returns_sequence_numbers_and_replay_keeps_order(tlog):
    main = tlog.create_branch()
    assert [tlog.push(main, Set(f"k{i}", i)) for i in range(5)] == [1, 2, 3, 4, 5]
    entries = list(tlog.replay(main))
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(isinstance(e, Entry) and e.branch == main and e.index == 0 for e in entries)
    assert [e.txn for e in entries] == [Set(f"k{i}", i) for i in range(5)]
    assert tlog.head(main) == 5


def test_push_of_a_list_is_one_commit(tlog):
    main = tlog.create_branch()
    assert tlog.push(main, [Set("a", 1), Set("b", 2), Delete("a")]) == 1
    assert tlog.push(main, (t for t in [Set("c", 3)])) == 2
    commits = list(tlog.commits(main))
    assert [c.seq for c in commits] == [1, 2]
    assert commits[0].txns == (Set("a", 1), Set("b", 2), Delete("a"))
    assert [(e.seq, e.index) for e in tlog.replay(main)] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    assert dict(tlog.view(main)) == {"b": 2, "c": 3}


def test_push_rejects_empty_commits_and_non_transactions(tlog):
    main = tlog.create_branch()
    with pytest.raises(ValueError, match="at least one"):
        tlog.push(main, [])
    with pytest.raises(TypeError, match="Set or Delete"):
        tlog.push(main, [Set("a", 1), ("set", "b", 2)])
    assert tlog.head(main) == 0


def test_keys_and_values_are_any_storable_objects(tlog):
    main = tlog.create_branch()
    key = ("tuple", 1, frozenset({2}))
    tlog.push(main, [Set(key, {"nested": [1, 2.5, None]}), Set(3, b"bytes"), Set(3.0, "three")])
    view = tlog.view(main)
    assert view[key] == {"nested": [1, 2.5, None]}
    assert view[3] == "three" and len(view) == 2  # 3 and 3.0 are one key, as in a dict


def test_view_folds_set_and_delete_at_any_sequence(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    tlog.push(main, Set("b", 2))
    tlog.push(main, [Delete("a"), Set("b", 3)])
    tlog.push(main, Delete("missing"))  # deleting an absent key changes nothing
    assert dict(tlog.view(main, at=0)) == {}
    assert dict(tlog.view(main, at=1)) == {"a": 1}
    assert dict(tlog.view(main, at=2)) == {"a": 1, "b": 2}
    assert dict(tlog.view(main, at=3)) == {"b": 3}
    snapshot = tlog.view(main)
    assert isinstance(snapshot, KVView) and (snapshot.branch, snapshot.seq) == (main, 4)
    tlog.push(main, Set("c", 4))
    assert dict(snapshot) == {"b": 3}  # a view is a snapshot
    assert "b" in snapshot and "a" not in snapshot
    with pytest.raises(KeyError):
        snapshot["a"]
    assert "KVView(branch=0, seq=4" in repr(snapshot)
    with pytest.raises(ValueError, match="beyond the head"):
        tlog.view(main, at=6)


def test_view_accepts_unhashable_keys(tlog):
    main = tlog.create_branch()
    tlog.push(main, [Set([1, 2], "list"), Set({"a": 1}, "dict")])
    view = tlog.view(main)
    assert view[[1, 2]] == "list" and view[{"a": 1}] == "dict"
    assert sorted(map(repr, view)) == ["[1, 2]", "{'a': 1}"]
    assert view == tlog.view(main) and view != {}
    assert view != tlog.view(main, at=0) and tlog.view(main, at=0) == {}
    tlog.push(main, Delete([1, 2]))
    assert list(tlog.view(main)) == [{"a": 1}]
    assert tlog.view(main) != view
    tlog.push(main, [Delete({"a": 1}), Set("k", 1)])
    assert tlog.view(main) == {"k": 1}
    assert {"k": 1} == tlog.view(main)  # noqa: SIM300 -- the reflected comparison


def test_replay_bounded_by_sequence(tlog):
    main = tlog.create_branch()
    for i in range(1, 7):
        tlog.push(main, Set(i, i))
    assert keys(tlog, main, start=2, end=4) == [2, 3, 4]
    assert keys(tlog, main, start=5) == [5, 6]
    assert keys(tlog, main, end=2) == [1, 2]
    assert keys(tlog, main, start=0, end=100) == [1, 2, 3, 4, 5, 6]  # end clips to the head
    assert keys(tlog, main, start=5, end=4) == []
    with pytest.raises(ValueError):
        list(tlog.replay(main, start=-1))
    with pytest.raises(TypeError):
        list(tlog.replay(main, end=True))


def test_replay_bounds_are_fixed_when_called(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    pending = tlog.replay(main)
    tlog.push(main, Set("b", 2))
    assert [e.txn.key for e in pending] == ["a"]


def test_fork_shares_history_up_to_its_point(tlog):
    main = tlog.create_branch()
    for i in range(1, 5):
        tlog.push(main, Set("x", i))
    at_head = tlog.fork(main)
    at_two = tlog.fork(main, at=2)
    at_zero = tlog.fork(main, at=0)
    assert tlog.branch_info(at_head).fork == 4
    assert dict(tlog.view(at_two)) == {"x": 2}
    assert dict(tlog.view(at_zero)) == {}
    assert tlog.push(at_two, Set("y", 1)) == 3  # numbering continues after the fork point
    assert tlog.push(at_zero, Set("z", 1)) == 1
    assert [(e.seq, e.branch) for e in tlog.replay(at_two)] == [(1, main), (2, main), (3, at_two)]
    with pytest.raises(ValueError, match="beyond the head"):
        tlog.fork(main, at=5)


def test_fork_of_a_fork_below_its_own_fork_point(tlog):
    main = tlog.create_branch()
    for i in range(1, 5):
        tlog.push(main, Set(i, i))
    child = tlog.fork(main, at=3)
    tlog.push(child, Set("c", 0))
    grandchild = tlog.fork(child, at=2)  # a position the child shares with main
    assert keys(tlog, grandchild) == [1, 2]
    tlog.push(grandchild, Set("g", 0))
    assert keys(tlog, grandchild) == [1, 2, "g"]


def test_branches_and_branch_info(tlog, clock):
    assert tlog.branches() == []
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    side = tlog.fork(main)
    other = tlog.create_branch()
    assert tlog.branches() == [main, side, other] == [0, 1, 2]
    info = tlog.branch_info(side)
    assert isinstance(info, BranchInfo)
    assert (info.id, info.parent, info.fork, info.head, info.rebased_from) == (1, 0, 1, 1, None)
    assert 1_000 < info.created <= clock.now
    assert tlog.branch_info(other).parent is None
    tlog.push(side, Set("b", 2))
    assert tlog.branch_info(side).head == 2
    assert tlog.branch_info(main).head == 1


def test_unknown_branches_raise(tlog):
    tlog.create_branch()
    for call in (
        lambda: tlog.push(7, Set("a", 1)),
        lambda: tlog.fork(7),
        lambda: tlog.view(7),
        lambda: tlog.replay(7),
        lambda: tlog.branch_info(-1),
    ):
        with pytest.raises(UnknownBranchError, match="no branch"):
            call()
    assert issubclass(UnknownBranchError, KeyError)
    with pytest.raises(TypeError):
        tlog.push(True, Set("a", 1))


def test_close_and_context_manager(storage):
    archive = storage.open()
    with BranchLog(archive, "test") as log:
        main = log.create_branch()
        log.push(main, Set("a", 1))
    assert log.closed
    for call in (log.create_branch, log.branches, lambda: log.push(main, Set("b", 1))):
        with pytest.raises(ArchiveClosedError):
            call()
    assert not archive.closed  # the archive belongs to the caller
    assert dict(BranchLog(archive, "test").view(main)) == {"a": 1}


def test_replay_stops_when_the_log_is_closed_midway(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    tlog.push(main, Set("b", 2))
    running = tlog.replay(main)
    next(running)
    tlog.close()
    with pytest.raises(ArchiveClosedError):
        next(running)


def test_namespaces_are_independent(storage):
    archive = storage.open()
    first, second = BranchLog(archive, "one"), BranchLog(archive, "two")
    a, b = first.create_branch(), second.create_branch()
    first.push(a, Set("k", "one"))
    assert (a, b) == (0, 0)
    assert dict(first.view(a)) == {"k": "one"} and dict(second.view(b)) == {}
    with pytest.raises(TypeError):
        BranchLog(archive, 5)


def test_keys_in_the_archive_follow_the_documented_layout(tlog):
    main = tlog.create_branch()
    for i in range(4):
        tlog.push(main, Set(i, i))
    stored = {k for k in tlog.archive if k[:2] == ("klepto.tlog", "test")}
    assert stored == {
        ("klepto.tlog", "test", "meta"),
        ("klepto.tlog", "test", "next"),
        ("klepto.tlog", "test", "branch", 0),
        *(("klepto.tlog", "test", "node", 0, s) for s in range(1, 5)),
        ("klepto.tlog", "test", "tidx", 0, 4),
        ("klepto.tlog", "test", "head", 0),
    }
    assert tlog.archive[("klepto.tlog", "test", "node", 0, 2)] == {
        "branch": 0,
        "seq": 2,
        "ts": tlog.archive[("klepto.tlog", "test", "node", 0, 2)]["ts"],
        "txns": (("set", 1, 1),),
    }


def test_index_interval_is_stored_with_the_namespace(storage):
    BranchLog(storage.open(), "test", index_every=8)
    assert reopen(storage).index_every == 8
    assert reopen(storage, index_every=8).index_every == 8
    with pytest.raises(ValueError, match="contradicts"):
        reopen(storage, index_every=16)
    with pytest.raises(ValueError):
        BranchLog(storage.open(), "other", index_every=0)


def test_a_cache_front_uses_its_backend_and_a_null_archive_is_refused():
    backend = dict_archive(cached=False)
    front = cache(archive=backend)
    log = BranchLog(front, "test")
    main = log.create_branch()
    log.push(main, Set("a", 1))
    assert log.archive is backend and ("klepto.tlog", "test", "node", 0, 1) in backend
    with pytest.raises(ValueError, match="null_archive"):
        BranchLog(null_archive(cached=False))
    with pytest.raises(TypeError, match="klepto archive"):
        BranchLog({})


def test_the_log_pickles_as_its_location(storage, clock):
    if storage.kind == "dict":
        pytest.skip("a dict_archive pickles its contents; nothing to reopen")
    log = BranchLog(storage.open(), "test", index_every=4)
    main = log.create_branch()
    log.push(main, Set("a", 1))
    again = pickle.loads(pickle.dumps(log))
    assert again.index_every == 4 and dict(again.view(main)) == {"a": 1}
    again.archive.close()


def test_module_docstring_example_runs():
    import doctest

    import klepto.logs.branches as module

    assert doctest.testmod(module).failed == 0


# --- optimistic concurrency and threads ---------------------------------------------------------
def test_if_head_commits_only_on_the_expected_head(tlog):
    main = tlog.create_branch()
    assert tlog.push(main, Set("a", 1), if_head=0) == 1
    with pytest.raises(ConflictError, match="head of branch 0 is 1, not 0"):
        tlog.push(main, Set("b", 2), if_head=0)
    other = reopen_same_archive(tlog)
    other.push(main, Set("c", 3))  # tlog's cached head is now stale
    with pytest.raises(ConflictError):
        tlog.push(main, Set("d", 4), if_head=1)
    assert tlog.push(main, Set("d", 4), if_head=2) == 3


def reopen_same_archive(log):
    return BranchLog(log.archive, log.namespace)


def test_a_stale_writer_moves_to_the_next_free_sequence(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    other = reopen_same_archive(tlog)
    assert other.push(main, Set("b", 2)) == 2
    assert tlog.push(main, Set("c", 3)) == 3  # seq 2 was taken: no overwrite, no gap
    assert keys(tlog, main) == ["a", "b", "c"]


def test_threads_pushing_to_one_branch_get_distinct_sequences():
    log = BranchLog(dict_archive(cached=False), "test", index_every=3)
    main = log.create_branch()
    logs = [log, *(reopen_same_archive(log) for _ in range(3))]  # separate caches too
    acked: list[list[int]] = [[] for _ in logs]

    def writer(n):
        for i in range(50):
            acked[n].append(logs[n].push(main, Set((n, i), i)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(len(logs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = list(log.replay(main))
    assert [e.seq for e in entries] == list(range(1, 201))
    assert sorted(seq for seqs in acked for seq in seqs) == list(range(1, 201))
    for n, seqs in enumerate(acked):
        assert [entries[s - 1].txn.key for s in seqs] == [(n, i) for i in range(50)]


def test_branch_ids_from_many_writers_are_distinct():
    archive = dict_archive(cached=False)
    logs = [BranchLog(archive, "test") for _ in range(4)]
    made: list[int] = []
    threads = [
        threading.Thread(target=lambda log=log: made.extend(log.create_branch() for _ in range(25)))
        for log in logs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == list(range(100))
    assert BranchLog(archive, "test").branches() == list(range(100))


# --- regressions: the bugs of the classic design (TLog) ------------------------------------------
def test_tlog_fork_replay_ignores_fork_point(storage, clock):
    log = BranchLog(storage.open(), "test", clock=clock)
    b0 = log.create_branch()
    log.push(b0, Set("t1", 1))
    log.push(b0, Set("t2", 2))
    b1 = log.fork(b0)
    log.push(b0, Set("t3", 3))
    log.push(b0, Set("t4", 4))
    log.push(b1, Set("t5", 5))
    log.push(b1, Set("t6", 6))
    assert keys(log, b1) == ["t1", "t2", "t5", "t6"]
    assert keys(log, b0) == ["t1", "t2", "t3", "t4"]
    again = reopen(storage)  # the fork alone is loaded first, as after a restart
    assert keys(again, b1) == ["t1", "t2", "t5", "t6"]
    again.push(b0, Set("t7", 7))
    assert keys(again, b1) == ["t1", "t2", "t5", "t6"]
    assert dict(again.view(b1)) == {"t1": 1, "t2": 2, "t5": 5, "t6": 6}


def test_tlog_branch_id_collision_after_loading_one_branch(storage):
    log = reopen(storage)
    b0 = log.create_branch()
    log.push(b0, Set("x1", 1))
    b1 = log.fork(b0)
    log.push(b1, Set("x2", 2))
    again = reopen(storage)
    again.view(b0)  # only branch 0 "loaded"
    fresh = again.create_branch()
    assert fresh not in (b0, b1)
    again.push(fresh, Set("NEW", 0))
    assert keys(again, b1) == ["x1", "x2"]
    # Even with the allocation hint gone, an id is taken only by an atomic add of its record.
    del storage.open()[("klepto.tlog", "test", "next")]
    assert reopen(storage).create_branch() == fresh + 1
    assert keys(reopen(storage), b1) == ["x1", "x2"]


def test_tlog_empty_branch_in_chain_truncates_replay(storage):
    log = reopen(storage)
    root = log.create_branch()
    for name in ("c1", "c2", "c3"):
        log.push(root, Set(name, 0))
    empty = log.fork(root)
    empty_too = log.fork(empty)
    leaf = log.fork(empty_too)
    log.push(leaf, Set("c9", 9))
    empty_root = log.create_branch()
    on_empty_root = log.fork(empty_root)
    log.push(on_empty_root, Set("only", 1))
    again = reopen(storage)
    assert keys(again, leaf) == ["c1", "c2", "c3", "c9"]
    assert keys(again, empty_too) == ["c1", "c2", "c3"]
    assert keys(again, on_empty_root) == ["only"]
    assert keys(again, empty_root) == []
    assert again.branch_info(empty).head == 3


def test_tlog_replay_swallows_backend_errors(storage):
    wrapped = Wrapped(storage.open())
    log = BranchLog(wrapped, "test")
    main = log.create_branch()
    for name in ("d1", "d2", "d3", "d4"):
        log.push(main, Set(name, 0))

    def fail(op, key):
        return OSError("fetch failed") if op == "get" and key[2:] == ("node", 0, 3) else None

    wrapped.fail = fail
    seen = []
    with pytest.raises(OSError, match="fetch failed"):
        for entry in log.replay(main):
            seen.append(entry.txn.key)
    assert seen == ["d1", "d2"]
    with pytest.raises(OSError):
        log.view(main)


def test_tlog_replay_ends_early_on_missing_node(storage):
    log = reopen(storage, index_every=64)
    main = log.create_branch()
    for i in range(5):
        log.push(main, Set(i, i))
    del storage.open()[("klepto.tlog", "test", "node", 0, 3)]
    again = reopen(storage)
    with pytest.raises(CorruptArchiveError, match="missing") as caught:
        list(again.replay(main))
    assert caught.value.key == ("klepto.tlog", "test", "node", 0, 3)
    with pytest.raises(CorruptArchiveError):
        again.view(main)


@pytest.mark.parametrize(
    "damage",
    [
        "not a node",
        {"branch": 0, "seq": 2, "ts": 5, "txns": [("bogus", 1)]},
        {"branch": 0, "seq": 2, "ts": 5, "txns": []},
        {"branch": 0, "seq": 2, "ts": -1, "txns": [("del", 1)]},
        {"branch": 0, "seq": 3, "ts": 5, "txns": [("del", 1)]},  # stored under another seq
    ],
    ids=["not-a-dict", "bad-txn", "no-txns", "bad-time", "moved"],
)
def test_tlog_replay_ends_early_on_undecodable_node(storage, damage):
    log = reopen(storage)
    main = log.create_branch()
    for i in range(3):
        log.push(main, Set(i, i))
    storage.open()[("klepto.tlog", "test", "node", 0, 2)] = damage
    with pytest.raises(CorruptArchiveError, match=r"node|transaction|timestamp"):
        list(reopen(storage).replay(main))


def test_tlog_damaged_branch_records_are_reported(storage):
    log = reopen(storage)
    main = log.create_branch()
    log.push(main, Set("a", 1))
    side = log.fork(main)
    archive = storage.open()
    archive[("klepto.tlog", "test", "branch", side)] = {
        "id": side,
        "parent": side,
        "fork": 0,
        "created": 1,
        "rebased_from": None,
    }
    with pytest.raises(CorruptArchiveError, match="later branch"):
        reopen(storage).view(side)
    del archive[("klepto.tlog", "test", "branch", main)]
    archive[("klepto.tlog", "test", "branch", side)] = {
        "id": side,
        "parent": main,
        "fork": 1,
        "created": 1,
        "rebased_from": None,
    }
    with pytest.raises(CorruptArchiveError, match="parent of branch 1 is missing"):
        reopen(storage).view(side)


def test_tlog_branch_exists_only_checks_loaded_branches(storage):
    log = reopen(storage)
    for _ in range(3):
        log.create_branch()
    log.push(2, Set("a", 1))
    again = reopen(storage)
    assert again.branch_info(2).head == 1  # no need to load 0 and 1 first
    assert again.branches() == [0, 1, 2]


def test_head_record_naming_a_missing_commit_is_reported(storage):
    log = reopen(storage)
    main = log.create_branch()
    log.push(main, Set("a", 1))
    storage.open()[("klepto.tlog", "test", "head", main)] = 5
    with pytest.raises(CorruptArchiveError, match="names missing commit 5"):
        reopen(storage).head(main)


def test_reopen_reads_a_constant_number_of_records(storage):
    log = reopen(storage, index_every=8)
    main = log.create_branch()
    for i in range(300):
        log.push(main, Set(i, i))
    counted = Wrapped(storage.open())
    again = BranchLog(counted, "test")
    assert again.head(main) == 300
    assert again.branches() == [main]
    assert counted.reads <= 8
    # A commit stored by a push cut short before its head write is adopted, cheaply.
    crashing = Wrapped(storage.open())
    cut_short = BranchLog(crashing, "test")
    crashing.crash_at, crashing.crash_after = crashing.writes + 1, True
    with pytest.raises(Crash):
        cut_short.push(main, Set("last", 1))
    counted = Wrapped(storage.open())
    assert BranchLog(counted, "test").head(main) == 301
    assert counted.reads <= 8


def test_unrelated_archive_keys_are_never_scanned(storage):
    archive = storage.open()
    for i in range(50):
        archive[("user", i)] = i
    counted = Wrapped(archive)
    log = BranchLog(counted, "test")
    main = log.create_branch()
    log.push(main, Set("a", 1))
    log.view(main)
    log.branches()
    assert counted.reads < 20


# --- timestamps -------------------------------------------------------------------------------
class SetClock:
    """A clock that returns whatever the test last set."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def push_at(log, clock, branch, when, key):
    clock.now = when
    return log.push(branch, Set(key, when))


def test_replay_by_timestamp_with_an_injected_clock(storage):
    clock = SetClock()
    log = BranchLog(storage.open(), "test", clock=clock, index_every=4)
    main = log.create_branch()
    for i in range(1, 21):
        push_at(log, clock, main, i * 10, i)
    assert [c.timestamp for c in log.commits(main)] == [i * 10 for i in range(1, 21)]
    assert keys(log, main, since=55, until=125) == [6, 7, 8, 9, 10, 11, 12]
    assert keys(log, main, since=60, until=120) == [6, 7, 8, 9, 10, 11]  # [since, until)
    assert keys(log, main, since=0, until=11) == [1]
    assert keys(log, main, since=201) == []
    assert keys(log, main, until=10) == []
    assert keys(log, main, since=195) == [20]
    assert keys(log, main, since=30, start=5, end=7) == [5, 6, 7]
    assert keys(log, main, since=65, start=2, end=9) == [7, 8, 9]
    again = BranchLog(storage.open(), "test", clock=clock)
    assert keys(again, main, since=155) == [16, 17, 18, 19, 20]


def test_timestamps_never_decrease_along_a_history(storage):
    clock = SetClock()
    log = BranchLog(storage.open(), "test", clock=clock, index_every=2)
    main = log.create_branch()
    push_at(log, clock, main, 100, "a")
    push_at(log, clock, main, 200, "b")
    push_at(log, clock, main, 150, "c")  # the clock stepped back: clamped
    side = log.fork(main, at=2)
    push_at(log, clock, side, 50, "s")  # clamped to the fork point's time
    push_at(log, clock, main, 300, "d")
    assert [c.timestamp for c in log.commits(main)] == [100, 200, 200, 300]
    assert [c.timestamp for c in log.commits(side)] == [100, 200, 200]
    assert keys(log, side, since=200) == ["b", "s"]
    assert keys(log, main, since=200, until=201) == ["b", "c"]
    with pytest.raises(ValueError, match="negative"):
        clock.now = -5
        log.push(main, Set("x", 1))
    clock.now = 2.5
    with pytest.raises(TypeError):
        log.push(main, Set("x", 1))


def test_timestamp_replay_spans_ancestors(storage):
    clock = SetClock()
    log = BranchLog(storage.open(), "test", clock=clock, index_every=3)
    main = log.create_branch()
    for i in range(1, 11):
        push_at(log, clock, main, i * 10, f"m{i}")
    side = log.fork(main, at=6)
    leaf = log.fork(side)  # empty branch in the middle
    for i in range(1, 5):
        push_at(log, clock, leaf, 1000 + i, f"l{i}")
    assert keys(log, leaf, since=45) == ["m5", "m6", "l1", "l2", "l3", "l4"]
    assert keys(log, leaf, since=61, until=1003) == ["l1", "l2"]
    assert keys(log, leaf, since=10, until=35) == ["m1", "m2", "m3"]


def test_timestamp_search_uses_the_sparse_index_not_a_scan(storage):
    clock = SetClock()
    log = BranchLog(storage.open(), "test", clock=clock, index_every=16)
    main = log.create_branch()
    for i in range(1, 1001):
        push_at(log, clock, main, i, i)
    counted = Wrapped(storage.open())
    again = BranchLog(counted, "test", clock=clock)
    assert keys(again, main, since=500, until=501) == [500]
    # One head probe, the run's last node, ~log2(62) index entries, < 16 nodes, the result.
    assert counted.reads <= 35
    # A missing index entry (a push cut short) falls back to the node: same answers.
    del storage.open()[("klepto.tlog", "test", "tidx", 0, 496)]
    assert keys(BranchLog(storage.open(), "test"), main, since=497, until=499) == [497, 498]


# --- crash points, simulated in-process (every write of a push and of a fork) ----------------
@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_push_cut_short_at_any_write_leaves_a_consistent_log(storage, after):
    for point in (1, 2, 3):  # node add, time-index add, head write (index_every=1)
        namespace = f"crash{point}"
        wrapped = Wrapped(storage.open())
        log = BranchLog(wrapped, namespace, index_every=1)
        a = log.create_branch()
        log.push(a, Set("a1", 1))
        b = log.fork(a)
        log.push(b, Set("b1", 1))
        wrapped.crash_at, wrapped.crash_after = wrapped.writes + point, after
        with pytest.raises(Crash):
            log.push(b, Set("b2", 2))
        stored = after or point > 1
        expected = ["a1", "b1", "b2"] if stored else ["a1", "b1"]
        again = BranchLog(storage.open(), namespace)
        assert keys(again, b) == expected
        assert keys(again, a) == ["a1"]
        assert again.branches() == [a, b]
        assert again.push(b, Set("b3", 3)) == len(expected) + 1
        assert keys(again, b) == [*expected, "b3"]
        assert again.push(a, Set("a2", 2)) == 2
        assert keys(again, b) == [*expected, "b3"]


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_fork_cut_short_never_leaves_a_reusable_id(storage, after):
    for point in (1, 2):  # branch record add, allocation hint write
        namespace = f"forkcrash{point}"
        wrapped = Wrapped(storage.open())
        log = BranchLog(wrapped, namespace)
        a = log.create_branch()
        log.push(a, Set("a1", 1))
        wrapped.crash_at, wrapped.crash_after = wrapped.writes + point, after
        with pytest.raises(Crash):
            log.fork(a)
        exists = after or point > 1
        again = BranchLog(storage.open(), namespace)
        assert again.branches() == ([a, 1] if exists else [a])
        fresh = again.fork(a)
        assert fresh == (2 if exists else 1)
        assert keys(again, fresh) == ["a1"]


# --- rebase ------------------------------------------------------------------------------------
def diverged(log):
    main = log.create_branch()
    log.push(main, Set("shared", 0))
    log.push(main, Set("x", 1))
    topic = log.fork(main)
    log.push(main, Set("m", 1))
    log.push(topic, Set("t", 1))
    log.push(topic, [Set("u", 1), Delete("x")])
    return main, topic


def test_rebase_replays_the_branch_commits_on_the_new_base(tlog):
    main, topic = diverged(tlog)
    rebased = tlog.rebase(topic, main)
    assert rebased not in (main, topic)
    info = tlog.branch_info(rebased)
    assert (info.parent, info.fork, info.head, info.rebased_from) == (main, 3, 5, topic)
    assert keys(tlog, rebased) == ["shared", "x", "m", "t", "u", "x"]
    assert values_of(tlog.commits(rebased, start=4)) == [("t",), ("u", "x")]
    assert dict(tlog.view(rebased)) == {"shared": 0, "m": 1, "t": 1, "u": 1}
    assert keys(tlog, topic) == ["shared", "x", "t", "u", "x"]  # the source is untouched


def test_rebase_fast_forwards_when_onto_contains_the_branch(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    topic = tlog.fork(main)
    tlog.push(main, Set("b", 2))
    tlog.push(main, Set("c", 3))
    before = len(list(tlog.archive))
    moved = tlog.rebase(topic, main)
    info = tlog.branch_info(moved)
    assert (info.parent, info.fork, info.head, info.rebased_from) == (main, 3, 3, topic)
    assert len(list(tlog.archive)) == before + 1  # a branch record; no commit copied
    feature = tlog.fork(main)
    tlog.push(feature, Set("f", 1))
    deeper = tlog.fork(feature)
    tlog.push(deeper, Set("g", 1))
    moved = tlog.rebase(feature, deeper)
    assert keys(tlog, moved) == ["a", "b", "c", "f", "g"]
    assert tlog.branch_info(moved).fork == tlog.head(deeper)


def test_rebase_of_an_up_to_date_branch_returns_it(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("a", 1))
    topic = tlog.fork(main)
    tlog.push(topic, Set("t", 1))
    assert tlog.rebase(topic, main) == topic
    assert tlog.rebase(main, main) == main
    assert tlog.branches() == [main, topic]


def test_rebase_conflicts_raise_by_default_and_write_nothing(tlog):
    main = tlog.create_branch()
    tlog.push(main, Set("k", 0))
    topic = tlog.fork(main)
    tlog.push(main, [Set("k", 1), Set("same", 5), Set("gone", 1)])
    tlog.push(topic, [Set("k", 2), Set("same", 5), Set("other", 1), Delete("gone")])
    before = tlog.branches()
    with pytest.raises(ConflictError, match="conflicts on 2 key") as caught:
        tlog.rebase(topic, main)
    assert sorted(caught.value.keys) == ["gone", "k"]  # equal changes are no conflict
    assert tlog.branches() == before
    ours = tlog.rebase(topic, main, conflict="ours")
    assert dict(tlog.view(ours)) == {"k": 2, "same": 5, "other": 1}
    theirs = tlog.rebase(topic, main, conflict="theirs")
    assert dict(tlog.view(theirs)) == {"k": 1, "same": 5, "other": 1, "gone": 1}
    with pytest.raises(ValueError, match="conflict must be one of"):
        tlog.rebase(topic, main, conflict="merge")


def test_rebase_theirs_skips_commits_left_empty(tlog):
    main = tlog.create_branch()
    topic = tlog.fork(main)
    tlog.push(main, Set("k", 1))
    tlog.push(topic, Set("k", 2))
    tlog.push(topic, Set("j", 2))
    rebased = tlog.rebase(topic, main, conflict="theirs")
    assert values_of(tlog.commits(rebased)) == [("k",), ("j",)]
    assert tlog.head(rebased) == 2


def test_rebase_cut_short_leaves_the_source_intact(storage):
    wrapped = Wrapped(storage.open())
    log = BranchLog(wrapped, "test")
    main, topic = diverged(log)
    wrapped.crash_at = wrapped.writes + 4  # record, hint, first commit, its head: then die
    with pytest.raises(Crash):
        log.rebase(topic, main)
    again = BranchLog(storage.open(), "test")
    partial = again.branches()[-1]
    info = again.branch_info(partial)
    assert (info.rebased_from, info.head) == (topic, 4)
    assert keys(again, topic) == ["shared", "x", "t", "u", "x"]
    assert keys(again, main) == ["shared", "x", "m"]


# --- the log against a plain Python model (hypothesis) --------------------------------------------
class Model:
    """Branches as plain lists: ``{id: (parent, fork, [commit txns, ...])}``."""

    def __init__(self) -> None:
        self.branches: dict[int, tuple[int | None, int, list[tuple]]] = {}

    def add(self, parent, fork, commits=()) -> int:
        self.branches[len(self.branches)] = (parent, fork, list(commits))
        return len(self.branches) - 1

    def history(self, branch, upto=None) -> list[tuple[int, int, tuple]]:
        """``[(writer branch, seq, txns)]`` of the whole history, root first."""
        parent, fork, commits = self.branches[branch]
        shared = self.history(parent, fork) if parent is not None else []
        own = [(branch, fork + n, txns) for n, txns in enumerate(commits, start=1)]
        whole = shared + own
        return whole if upto is None else whole[:upto]

    def head(self, branch) -> int:
        return len(self.history(branch))

    def state(self, branch, upto=None) -> dict:
        state = {}
        for _, _, txns in self.history(branch, upto):
            for txn in txns:
                if isinstance(txn, Set):
                    state[txn.key] = txn.value
                else:
                    state.pop(txn.key, None)
        return state

    def rebase(self, branch, onto, policy):
        """The expected result: ``('same', branch)``, ``('error', keys)`` or a new branch."""
        ours, theirs = self.history(branch), self.history(onto)
        base = 0
        while base < min(len(ours), len(theirs)) and ours[base][:2] == theirs[base][:2]:
            base += 1
        if base == len(theirs):
            return ("same", branch)
        mine = [txns for _, _, txns in ours[base:]]
        conflicts = _effects(mine).items() - _effects([t for _, _, t in theirs[base:]]).items()
        conflicting = {key for key, _ in conflicts} & _effects(
            [t for _, _, t in theirs[base:]]
        ).keys()
        if conflicting and policy == "error":
            return ("error", conflicting)
        if policy == "theirs":
            mine = [tuple(t for t in txns if t.key not in conflicting) for txns in mine]
            mine = [txns for txns in mine if txns]
        return ("new", self.add(onto, len(theirs), mine))


def _effects(commits) -> dict:
    effects = {}
    for txns in commits:
        for txn in txns:
            effects[txn.key] = ("set", txn.value) if isinstance(txn, Set) else ("del",)
    return effects


KEYS = st.sampled_from(["a", "b", "c", 7, ("t", 1)])
TXNS = st.one_of(st.builds(Set, KEYS, st.integers(0, 2)), st.builds(Delete, KEYS))


class LogMachine(RuleBasedStateMachine):
    """create / fork / push / rebase / reopen, checking views and replays after each step."""

    storage_kind = "dict"

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="klepto-branches-")
        self.storage = backends.Storage(self.storage_kind, self.folder)
        self.log = BranchLog(self.storage.open(), "model", clock=FakeClock(), index_every=3)
        self.model = Model()

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def reopened(self) -> BranchLog:
        return BranchLog(self.storage.open(), "model", clock=FakeClock(10**12))

    @rule()
    def create(self):
        assert self.log.create_branch() == self.model.add(None, 0)

    @precondition(lambda self: self.model.branches)
    @rule(data=st.data())
    def fork(self, data):
        branch = data.draw(st.sampled_from(sorted(self.model.branches)))
        at = data.draw(st.none() | st.integers(0, self.model.head(branch)))
        point = self.model.head(branch) if at is None else at
        assert self.log.fork(branch, at=at) == self.model.add(branch, point)

    @precondition(lambda self: self.model.branches)
    @rule(data=st.data(), txns=st.lists(TXNS, min_size=1, max_size=3))
    def push(self, data, txns):
        branch = data.draw(st.sampled_from(sorted(self.model.branches)))
        seq = self.log.push(branch, txns)
        self.model.branches[branch][2].append(tuple(txns))
        assert seq == self.model.head(branch)

    @precondition(lambda self: self.model.branches)
    @rule(data=st.data(), theirs=st.lists(TXNS, min_size=1, max_size=2), ours=TXNS)
    def diverge(self, data, theirs, ours):
        """Fork a branch and push to both sides, so that rebases have work to do."""
        parent = data.draw(st.sampled_from(sorted(self.model.branches)))
        child = self.log.fork(parent)
        assert child == self.model.add(parent, self.model.head(parent))
        self.log.push(parent, theirs)
        self.model.branches[parent][2].append(tuple(theirs))
        self.log.push(child, ours)
        self.model.branches[child][2].append((ours,))

    @precondition(lambda self: self.model.branches)
    @rule(data=st.data(), policy=st.sampled_from(["error", "ours", "theirs"]))
    def rebase(self, data, policy):
        branch = data.draw(st.sampled_from(sorted(self.model.branches)))
        parent = self.model.branches[branch][0]
        # Mostly onto the parent (the usual rebase), else onto any branch.
        others = st.sampled_from(sorted(self.model.branches))
        onto = data.draw(others if parent is None else st.just(parent) | others)
        expected = self.model.rebase(branch, onto, policy)
        if expected[0] == "error":
            with pytest.raises(ConflictError) as caught:
                self.log.rebase(branch, onto, conflict=policy)
            assert set(caught.value.keys) == expected[1]
            return
        assert self.log.rebase(branch, onto, conflict=policy) == expected[1]

    @rule()
    def reopen(self):
        self.log = self.reopened()

    @precondition(lambda self: self.model.branches)
    @rule(data=st.data())
    def check_branch(self, data):
        branch = data.draw(st.sampled_from(sorted(self.model.branches)))
        head = self.model.head(branch)
        at = data.draw(st.integers(0, head))
        assert dict(self.log.view(branch, at=at)) == self.model.state(branch, at)
        history = self.model.history(branch)
        commits = list(self.log.commits(branch))
        assert [(c.branch, c.seq, c.txns) for c in commits] == history
        start = data.draw(st.integers(0, head + 1))
        end = data.draw(st.integers(0, head + 1))
        expected = [t for _, seq, txns in history if start <= seq <= end for t in txns]
        assert [e.txn for e in self.log.replay(branch, start, end)] == expected

    @invariant()
    def branches_and_heads_agree(self):
        assert self.log.branches() == sorted(self.model.branches)
        for branch, (parent, fork, _) in self.model.branches.items():
            info = self.log.branch_info(branch)
            assert (info.parent, info.fork, info.head) == (parent, fork, self.model.head(branch))
            assert dict(self.log.view(branch)) == self.model.state(branch)


@pytest.mark.parametrize("kind", backends.params())
def test_log_matches_a_plain_model(kind):
    machine = type(f"LogMachine_{kind}", (LogMachine,), {"storage_kind": kind})
    examples, steps = (60, 30) if kind == "dict" else (8, 20)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
