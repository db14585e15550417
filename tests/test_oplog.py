"""The operation store (klepto.logs.oplog): API, guarantees, laaos regressions (each test
named after the laaos bug it prevents), and hypothesis models of the store and its values."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import decimal
import enum
import gc
import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from klepto import _fs
from klepto.errors import ArchiveClosedError, CorruptRecordError
from klepto.logs import (
    DataclassAsDictHandler,
    DataclassHandler,
    DetachedError,
    StoreDict,
    StoreList,
    StoreRoot,
    StoreSet,
    StrEnumHandler,
    TaggedValue,
    TypeHandler,
    UnknownTypeError,
    WeakEnumHandler,
    compact,
    create_file_store,
    export,
    open_file_store,
    open_store,
    safe_load,
)
from klepto.logs.oplog import plain
from klepto.records import RecordFile, write_records
from klepto.serializers import get_serializer
from tests._io_inject import Inject

REPO = Path(__file__).resolve().parents[1]


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Point:
    x: float
    y: tuple


def same(a, b) -> bool:
    """Equal, with equal types all the way down, NaN equal to NaN and -0.0 apart from 0.0."""
    return norm(a) == norm(b)


def norm(value):
    if isinstance(value, (StoreDict, StoreList, StoreSet)):
        value = plain(value)
    kind = type(value)
    if kind is float:
        return ("float", repr(value))
    if kind is complex:
        return ("complex", repr(value.real), repr(value.imag))
    if kind in (list, tuple):
        return (kind.__name__, tuple(norm(v) for v in value))
    if kind in (set, frozenset):
        return (kind.__name__, tuple(sorted((norm(v) for v in value), key=repr)))
    if kind is dict:
        return ("dict", tuple((norm(k), norm(v)) for k, v in value.items()))
    return (kind.__name__, value)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store.oplog")


def reload(store):
    """The store's file, replayed from disk."""
    return safe_load(store.path)


def records(path):
    with RecordFile(path) as file:
        return [json.loads(r) for r in file]


# --- surface ------------------------------------------------------------------------------
def test_create_file_store_builds_the_laaos_path(in_tmpdir):
    store = create_file_store("results", suffix="_x", prefix="logs/", ext=".oplog")
    assert store.uri == store.path == "logs/results_x.oplog"
    assert os.path.isfile("logs/results_x.oplog")
    store.close()
    timed = create_file_store("run")
    assert timed.uri.startswith("oplog/run_2") and timed.uri.endswith(".oplog")
    timed.close()


def test_root_behaves_like_a_dict(path):
    with open_store(path) as store:
        store["a"] = 1
        store.update(b=2, c=[1])
        assert store.setdefault("d", {}) == {}
        assert store.pop("a") == 1
        assert sorted(store) == ["b", "c", "d"] and len(store) == 3 and "b" in store
        assert store == {"b": 2, "c": [1], "d": {}}
        assert isinstance(store, StoreRoot) and isinstance(store["c"], StoreList)
        assert store.get("zz", 5) == 5 and next(iter(store.items())) == ("b", 2)
        assert store.copy() == {"b": 2, "c": [1], "d": {}} and type(store.copy()["c"]) is list
        assert pickle.loads(pickle.dumps(store)) == {"b": 2, "c": [1], "d": {}}
    assert safe_load(path) == {"b": 2, "c": [1], "d": {}}


def test_closed_store_refuses_changes_and_reads_still_work(path):
    store = open_store(path)
    store["l"] = [1]
    inner = store["l"]
    store.close()
    store.close()
    assert store.closed and store["l"] == [1]
    with pytest.raises(ArchiveClosedError):
        store["x"] = 1
    with pytest.raises(ArchiveClosedError):
        inner.append(2)


def test_open_file_store_continues_a_store(in_tmpdir):
    with create_file_store("r", suffix="", initial_data={"losses": [0.5]}) as store:
        store["losses"].append(0.25)
    with open_file_store("r", initial_data={"ignored": True}) as store:
        assert store == {"losses": [0.5, 0.25]}
        store["losses"].append(0.125)
    assert safe_load("oplog/r.oplog") == {"losses": [0.5, 0.25, 0.125]}


def test_mode_w_starts_anew_and_x_refuses_an_existing_store(path):
    with open_store(path) as store:
        store["a"] = 1
    with open_store(path, "w") as store:
        assert store == {}
    with pytest.raises(FileExistsError):
        open_store(path, "x")


def test_a_record_file_that_is_not_a_store_is_refused(tmp_path):
    other = tmp_path / "plain.rec"
    write_records(other, [b"hello"])
    with pytest.raises(CorruptRecordError, match="not an operation store"):
        safe_load(other)
    with pytest.raises(CorruptRecordError):
        open_store(other)


def test_one_writer_at_a_time(path):
    from klepto.records import RecordFileLocked

    with open_store(path), pytest.raises(RecordFileLocked):
        open_store(path)


# --- every operation: memory equals replay -------------------------------------------------
def _dict_ops(s):
    s["d"] = {"a": 1, 2: "two", (1, 2): [3], "$tag": "x"}
    s["d"]["b"] = {"deep": {"er": [1, {2}]}}
    s["d"]["b"]["deep"]["er"][1].add(3)
    del s["d"][2]
    s["d"].pop("a")
    s["d"][(1, 2)].append(4)
    s["d"].popitem()
    s["d"].update({"u": 1}, v=2)
    s["d"].setdefault("w", [])
    s["e"] = {}
    s["e"].clear()


def _list_ops(s):
    s["l"] = [0, 1, 2, 3, 4, 5]
    s["l"].append(6)
    s["l"].insert(0, -1)
    s["l"].insert(-2, "neg")
    s["l"].insert(100, "end")
    s["l"].insert(-100, "start")
    s["l"][-1] = "last"
    del s["l"][-3]
    assert s["l"].pop() == "last"
    s["l"].pop(0)
    s["l"].pop(-3)
    s["l"].remove("neg")
    s["l"].extend(iter([7, 8]))
    s["l"] += [9]
    s["l"].extend(s["l"])
    s["l"].reverse()
    s["l"].sort()
    s["l"].sort(key=lambda v: -v, reverse=True)
    s["m"] = [3, 1]
    s["m"].clear()


def _set_ops(s):
    s["s"] = {1, 2, 3}
    s["s"].add(4)
    s["s"].add(4)
    s["s"].discard(1)
    s["s"].discard(99)
    s["s"].remove(2)
    s["s"].pop()
    s["s"] |= {10, 11}
    s["s"] -= {10}
    s["s"].update([20], (21,))
    s["t"] = {("a", 1), frozenset({1}), b"x", None}
    s["t"].clear()


def _nested_list_ops(s):
    s["runs"] = [{"losses": []}, {"losses": [1]}]
    s["runs"].insert(0, {"losses": [0]})
    s["runs"][-1]["losses"].append(2)
    s["runs"][1]["losses"].append(1.5)
    s["runs"].reverse()
    s["runs"][0]["losses"].append(3)
    s["runs"].pop(1)
    s["runs"][-1]["losses"].append(0.5)
    s["runs"].sort(key=lambda run: len(run["losses"]))
    s["runs"][0]["tag"] = "first"
    del s["runs"][0]["losses"][0]


@pytest.mark.parametrize("script", [_dict_ops, _list_ops, _set_ops, _nested_list_ops])
def test_every_operation_replays_to_the_in_memory_state(path, script):
    model: dict = {}
    script(model)
    with open_store(path) as store:
        script(store)
        memory = plain(store)
    assert same(memory, model)
    assert same(safe_load(path), memory)
    with open_store(path) as again:  # and a continued store starts from the same state
        assert same(plain(again), memory)


def test_operations_are_data_records_that_the_safe_serializer_reads(path):
    with open_store(path) as store:
        store["x"] = (1, b"b")
        store["l"] = []
        store["l"].append(float("nan"))
    with RecordFile(path) as file:
        raw = list(file)
    assert [json.loads(r) for r in raw][-1] == [["app", ["l"], {"$f": "nan"}]]
    safe = get_serializer("safe")
    assert safe.loads(raw[0]) == [["set", [], "x", (1, b"b")]]


def test_slices_are_refused(path):
    with open_store(path) as store:
        store["l"] = [1, 2, 3]
        with pytest.raises(TypeError, match="slice"):
            store["l"][0:1] = [5]
        with pytest.raises(TypeError, match="slice"):
            del store["l"][0:1]
        assert store["l"][0:2] == [1, 2]
    assert safe_load(path) == {"l": [1, 2, 3]}


def test_refused_calls_change_nothing(path):
    with open_store(path) as store:
        store["l"] = [1]
        store["d"] = {}
        store["s"] = set()
        with pytest.raises(IndexError):
            store["l"][5] = 1
        with pytest.raises(IndexError):
            store["l"].pop(3)
        with pytest.raises(ValueError):
            store["l"].remove(9)
        with pytest.raises(KeyError):
            del store["d"]["missing"]
        with pytest.raises(TypeError):
            store["d"]["x"] = object()
        with pytest.raises(TypeError):
            store["s"].add([1])
        with pytest.raises(ValueError, match="NaN"):
            store["d"][float("nan")] = 1
        store["l"].append("str")
        with pytest.raises(TypeError):
            store["l"].sort()
        assert store["l"] == [1, "str"]
        memory = plain(store)
        pending = store.pending
    assert pending == 0
    assert safe_load(path) == memory


# --- laaos bug regressions -----------------------------------------------------------------
def test_laaos_insert_keeps_the_paths_of_later_nested_elements(path):
    with open_store(path) as store:
        store["l"] = [{0}, {1}]
        store["l"].insert(0, {-1})
        moved = store["l"][2]
        moved.discard(1)
        moved.add(99)
        assert store["l"] == [{-1}, {0}, {99}]
    assert safe_load(path) == {"l": [{-1}, {0}, {99}]}


def test_laaos_pop_removes_exactly_one_element(path):
    with open_store(path) as store:
        store["l"] = [1, 2, 3]
        store["l"].pop()
        store["l"].pop(-1)
        assert store["l"] == [1]
        store["l"].extend([5, 3, 6])
        store["l"].reverse()
        store["l"].pop()
        assert store["l"] == [6, 3, 5]
    assert safe_load(path) == {"l": [6, 3, 5]}


def test_laaos_reopen_without_truncate_keeps_the_first_run(in_tmpdir):
    with create_file_store("run", suffix="") as first:
        first["before"] = 1
    with create_file_store("run", suffix="") as second:
        assert second == {"before": 1}  # laaos 1.1.0 showed {} and shadowed the first run
        second["more"] = 3
    assert safe_load("oplog/run.oplog") == {"before": 1, "more": 3}


def test_laaos_nan_and_inf_load(path):
    values = [float("nan"), float("inf"), -float("inf"), -0.0, complex(float("nan"), 1)]
    with open_store(path) as store:
        store["losses"] = []
        for value in values:
            store["losses"].append(value)
    assert same(safe_load(path)["losses"], values)


def test_laaos_torn_last_write_costs_at_most_the_last_commit(path):
    with open_store(path) as store:
        store["l"] = []
        for i in range(50):
            store["l"].append(i)
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size - 3)
    loaded = safe_load(path)["l"]
    assert loaded in ([*range(50)], [*range(49)])
    with open_store(path) as store:  # and it continues after the torn commit
        store["l"].append("next")
    assert safe_load(path)["l"][-1] == "next"


def test_laaos_tuples_bytes_and_sets_keep_their_types(path):
    value = {"t": (1, (2,)), "b": b"\x00\xff", "ba": bytearray(b"x"), "fs": frozenset({1})}
    with open_store(path) as store:
        store["v"] = value
        assert same(store["v"], value)
    assert same(safe_load(path)["v"], value)


def test_laaos_safe_load_executes_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    code = f"__import__('os').system('touch {marker}')"
    store_path = tmp_path / "evil.oplog"
    with open_store(store_path) as store:
        store[code] = code
    assert safe_load(store_path) == {code: code}
    evil = [["exec", [], code], ["set", [], "x", {"$t": code}]]
    write_records(
        tmp_path / "crafted.oplog",
        [json.dumps(evil).encode()],
        metadata=b'{"format": "klepto.oplog", "version": 1}',
    )
    with pytest.raises(CorruptRecordError, match="does not apply"):
        safe_load(tmp_path / "crafted.oplog")
    assert not marker.exists()


def test_laaos_generators_are_not_turned_into_lists_silently(path):
    with open_store(path) as store:
        with pytest.raises(TypeError, match="cannot store"):
            store["g"] = (i for i in range(3))
        store["l"] = []
        store["l"].extend(i for i in range(3))  # extend consumes an iterable, as list does
        assert store["l"] == [0, 1, 2]


def test_laaos_readme_names_exist():
    from klepto import logs

    for name in ("create_file_store", "open_file_store", "safe_load", "compact", "export"):
        assert callable(getattr(logs, name))
    assert WeakEnumHandler and StrEnumHandler


# --- copies, detaching ---------------------------------------------------------------------
def test_assigning_copies_the_container_in(path):
    original = {"l": [1, 2]}
    with open_store(path) as store:
        store["d"] = original
        original["l"].append(3)
        original["new"] = 1
        assert store["d"] == {"l": [1, 2]}
        store["d2"] = store["d"]  # a store container is copied too
        store["d2"]["l"].append(9)
        assert store["d"]["l"] == [1, 2]
    assert safe_load(path) == {"d": {"l": [1, 2]}, "d2": {"l": [1, 2, 9]}}


def test_replacing_detaches_the_old_collection(path):
    with open_store(path) as store:
        store["l"] = [[1], [2]]
        old = store["l"]
        inner = old[0]
        store["l"] = []
        assert old == [[1], [2]]  # still readable
        with pytest.raises(DetachedError, match="removed from its store"):
            old.append(3)
        with pytest.raises(DetachedError):
            inner.append(3)
        store["d"] = {"s": {1}}
        popped = store["d"].pop("s")
        with pytest.raises(DetachedError):
            popped.add(2)
        store["x"] = [{1}]
        element = store["x"][0]
        store["x"].clear()
        with pytest.raises(DetachedError):
            element.add(5)
    assert safe_load(path) == {"l": [], "d": {}, "x": []}


# --- type handlers ------------------------------------------------------------------------
def test_weak_enum_handler_round_trips_members(path):
    with open_store(path, type_handlers=[WeakEnumHandler()]) as store:
        store["c"] = Color.RED
        store["l"] = [Color.GREEN]
        store["s"] = {Color.RED}
        store[Color.GREEN] = 1
        assert store["c"] is Color.RED
    loaded = safe_load(path, type_handlers=[WeakEnumHandler(Color)])
    assert loaded == {"c": Color.RED, "l": [Color.GREEN], "s": {Color.RED}, Color.GREEN: 1}
    with pytest.raises(UnknownTypeError, match="type handler"):
        safe_load(path)
    with pytest.raises(UnknownTypeError, match="Color"):
        safe_load(path, type_handlers=[WeakEnumHandler()])
    kept = safe_load(path, unknown="keep")
    assert kept["c"] == TaggedValue("enum", ["Color", "RED"])


def test_enum_without_a_handler_is_refused(path):
    with open_store(path) as store, pytest.raises(TypeError, match="WeakEnumHandler"):
        store["c"] = Color.RED


def test_str_enum_handler_stores_the_string_in_memory_too(path):
    with open_store(path, type_handlers=[StrEnumHandler()]) as store:
        store["c"] = Color.RED
        assert store["c"] == "Color.RED"
    assert safe_load(path) == {"c": "Color.RED"}


def test_dataclass_handlers(path):
    point = Point(1.5, (1, 2))
    with open_store(path, type_handlers=[DataclassHandler(Point)]) as store:
        store["p"] = point
        assert store["p"] == point and store["p"] is not point
    assert safe_load(path, type_handlers=[DataclassHandler(Point)]) == {"p": point}
    with open_store(path, "w", type_handlers=[DataclassAsDictHandler()]) as store:
        store["p"] = point
        assert isinstance(store["p"], StoreDict)
        store["p"]["x"] = 2.0
    assert safe_load(path) == {"p": {"x": 2.0, "y": (1, 2)}}


def test_custom_handler_protocol(path):
    class Celsius:
        def __init__(self, degrees):
            self.degrees = degrees

        def __eq__(self, other):
            return isinstance(other, Celsius) and other.degrees == self.degrees

        __hash__ = None

    class CelsiusHandler(TypeHandler):
        tag = "celsius"

        def supports(self, obj):
            return isinstance(obj, Celsius)

        def encode(self, obj):
            return obj.degrees

        def decode(self, data):
            return Celsius(data)

    with open_store(path, type_handlers=[CelsiusHandler()]) as store:
        store["t"] = [Celsius(21.5)]
    assert safe_load(path, type_handlers=[CelsiusHandler()]) == {"t": [Celsius(21.5)]}


# --- transactions and batching ------------------------------------------------------------
def test_transaction_is_one_commit(path):
    with open_store(path) as store:
        store["l"] = []
        with RecordFile(path) as reader:
            before = reader.commit_seq
        with store.transaction():
            for i in range(10):
                store["l"].append(i)
            with store.transaction():  # nested blocks join
                store["x"] = 1
            assert safe_load(path) == {"l": []}  # nothing visible before the block ends
        with RecordFile(path) as reader:
            assert reader.commit_seq == before + 1
    assert safe_load(path) == {"l": list(range(10)), "x": 1}


def test_failed_transaction_restores_memory_exactly(path):
    with open_store(path) as store:
        store["d"] = {"a": [1, {"s": {1}}], "b": 2, "c": 3}
        store["l"] = [{"k": 1}, {"k": 2}, {"k": 3}]
        keep_list = store["d"]["a"]
        keep_set = store["d"]["a"][1]["s"]
        moved = store["l"][2]
        before = copy.deepcopy(plain(store))
        with pytest.raises(RuntimeError), store.transaction():
            del store["d"]["b"]  # order must come back too
            store["d"]["b"] = "new"
            keep_list.append(9)
            store["d"]["a"] = "replaced"
            store["l"].insert(0, {"k": 0})
            store["l"][1]["k"] = 10
            created = store["l"][0]
            store["l"].reverse()
            store["new"] = [1]
            raise RuntimeError("abort")
        assert same(plain(store), before)
        assert list(store["d"]) == ["a", "b", "c"]
        keep_list.append("after")  # revived: usable again
        keep_set.add(2)
        moved["k"] = 33  # its index is right again
        with pytest.raises(DetachedError):
            created["k"] = 1
        memory = plain(store)
    assert same(safe_load(path), memory)
    assert memory["l"][2] == {"k": 33}


def test_commit_inside_a_transaction_is_refused(path):
    with open_store(path) as store, store.transaction():
        with pytest.raises(RuntimeError, match="transaction"):
            store.commit()
        with pytest.raises(RuntimeError):
            store.close()


def test_batch_commits_every_n_operations(path):
    store = open_store(path, batch=10)
    store["l"] = []
    for i in range(25):
        store["l"].append(i)
    assert store.pending == 6
    assert safe_load(path) == {"l": list(range(19))}
    assert store.commit() and store.pending == 0 and not store.commit()
    store.batch = None
    store["l"].append(25)
    assert store.batch is None and store.pending == 1
    store.close()
    assert safe_load(path)["l"] == list(range(26))


def test_a_forgotten_store_commits_when_collected(path):
    store = open_store(path, batch=None)
    store["x"] = 1
    del store
    gc.collect()
    assert safe_load(path) == {"x": 1}


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pending_operations_are_committed_at_interpreter_exit(tmp_path):
    code = (
        "from klepto.logs import open_store\n"
        "s = open_store('x.oplog', batch=None)\n"
        "s['l'] = [1]\n"
        "s['l'].append(2)\n"
    )
    assert _run(code, tmp_path).returncode == 0
    assert safe_load(tmp_path / "x.oplog") == {"l": [1, 2]}


def test_each_operation_is_in_the_file_when_the_call_returns(tmp_path):
    """Default batch=1: a process that dies without closing loses nothing it was told."""
    code = (
        "import os\n"
        "from klepto.logs import open_store\n"
        "s = open_store('x.oplog')\n"
        "s['l'] = []\n"
        "for i in range(20):\n"
        "    s['l'].append(i)\n"
        "os._exit(0)\n"
    )
    assert _run(code, tmp_path).returncode == 0
    assert safe_load(tmp_path / "x.oplog") == {"l": list(range(20))}


def test_a_failed_commit_keeps_the_change_pending(path, monkeypatch):
    store = open_store(path)
    store["l"] = [1]
    real = _fs._pwrite_once
    calls = {"n": 0}

    def failing(*args):  # the disk is full for the first write
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(_fs, "_pwrite_once", failing)
    with pytest.raises(OSError, match="space"):
        store["l"].append(2)
    assert store["l"] == [1, 2] and store.pending == 1
    assert safe_load(path) == {"l": [1]}
    store["l"].append(3)  # the next commit writes both
    assert store.pending == 0
    store.close()
    assert safe_load(path) == {"l": [1, 2, 3]}


def test_a_failed_transaction_commit_rolls_back(path, monkeypatch):
    store = open_store(path)
    store["l"] = [1]

    def failing(*args):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(_fs, "_pwrite_once", failing)
    with pytest.raises(OSError), store.transaction():
        store["l"].append(2)
    assert store["l"] == [1] and store.pending == 0
    monkeypatch.undo()
    store["l"].append(3)
    store.close()
    assert safe_load(path) == {"l": [1, 3]}


# --- compaction and export ----------------------------------------------------------------
def _filled(path):
    with open_store(path, type_handlers=[WeakEnumHandler()]) as store:
        store["losses"] = []
        for i in range(100):
            store["losses"].append(i / 7)
        store["c"] = Color.RED
        store["t"] = (1, float("nan"))
        memory = plain(store)
    return memory


def test_compact_to_another_file_and_in_place(tmp_path):
    src, dst = str(tmp_path / "a.oplog"), str(tmp_path / "b.oplog")
    memory = _filled(src)
    compact(src, dst)
    assert len(records(dst)) == 1
    handlers = [WeakEnumHandler(Color)]
    assert same(safe_load(dst, type_handlers=handlers), memory)
    compact(src)
    assert len(records(src)) == 1
    assert same(safe_load(src, type_handlers=handlers), memory)
    with open_store(src, type_handlers=handlers) as store:  # and it continues
        store["losses"].append(1.0)
    assert safe_load(src, type_handlers=handlers)["losses"][-1] == 1.0


def test_online_compact(path):
    with open_store(path) as store:
        store["l"] = []
        for i in range(20):
            store["l"].append(i)
        store.compact()
        store["l"].append(20)
    assert len(records(path)) == 2
    assert safe_load(path) == {"l": list(range(21))}


def test_export_python_source_for_humans(tmp_path):
    src = str(tmp_path / "a.oplog")
    _filled(src)
    count = export(src, tmp_path / "a.py", format="py")
    text = (tmp_path / "a.py").read_text()
    lines = text.splitlines()
    assert count == len(lines) == 3 + 1 + 100 + 2
    assert "store['losses'].append(0.14285714285714285)" in lines
    assert "store['c'] = Color.RED" in lines
    assert "store['t'] = (1, float('nan'))" in lines
    assert "Never load this file" in text


def test_export_json_lines_for_tools(tmp_path):
    src = str(tmp_path / "a.oplog")
    _filled(src)
    count = export(src, tmp_path / "a.jsonl")
    ops = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert count == len(ops) == 103
    assert ops[1] == ["app", ["losses"], 0.0]
    assert ops[-1] == ["set", [], "t", {"$t": [1, {"$f": "nan"}]}]
    with pytest.raises(ValueError, match="format"):
        export(src, tmp_path / "x", format="xml")


# --- hypothesis: values round trip ---------------------------------------------------------
_hashables = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.datetimes()
    | st.dates(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
_values = st.recursive(
    _hashables
    | st.floats()
    | st.complex_numbers()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.timedeltas()
    | st.times(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.dictionaries(_hashables, inner, max_size=3)
        | st.sets(_hashables, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(value=_values)
def test_values_round_trip_exactly(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("rt") / "v.oplog"
    with open_store(path) as store:
        store["v"] = value
        store["l"] = []
        store["l"].append(value)
        assert same(store["v"], value)
    loaded = safe_load(path)
    assert same(loaded["v"], value) and same(loaded["l"][0], value)


def test_other_value_types_round_trip(path):
    value = [decimal.Decimal("1.10"), uuid.UUID(int=5), datetime.timedelta(1, 2, 3), 10**400]
    with open_store(path) as store:
        store["v"] = value
    assert same(safe_load(path)["v"], value)
    with open_store(path) as store, pytest.raises(ValueError, match="too large"):
        store["huge"] = 1 << 20_000


# --- hypothesis: the store against a plain Python model -----------------------------------
_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab", max_size=2)
_plain_values = st.recursive(
    _scalars | st.tuples(_scalars),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abc", max_size=2), inner, max_size=3)
        | st.sets(st.integers(0, 5), max_size=3)
    ),
    max_leaves=6,
)


def _containers(value, path=()):
    """Every (path, kind) of a container inside ``value``, the value itself first."""
    found = [(path, type(value))]
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list, set)):
                found += _containers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list, set)):
                found += _containers(item, (*path, index))
    return found


def _discard_result(_value):
    return None


def _at(root, path):
    for step in path:
        root = root[step]
    return root


class StoreMachine(RuleBasedStateMachine):
    """Random operations on a store and on a plain model; both must agree, in memory, after
    a replay from disk, and after closing and reopening the store."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "m.oplog")
        self.store = open_store(self.path, "w")
        self.model: dict = {}

    def teardown(self):
        self.store.close()
        assert same(safe_load(self.path), self.model)
        import shutil

        shutil.rmtree(self.dir)

    def _pick(self, data, kind):
        paths = [p for p, k in _containers(self.model) if k is kind]
        if not paths:
            return None
        return data.draw(st.sampled_from(paths))

    def _both(self, path, action):
        """Run ``action`` on the model container and the store container at ``path``;
        both raise the same exception type or neither does (and then both return alike)."""
        errors = (IndexError, KeyError, ValueError, TypeError)
        trial = copy.deepcopy(_at(self.model, path))  # list.sort may half-sort, then raise
        try:
            action(trial)
        except errors as exc:
            with pytest.raises(type(exc)):
                action(_at(self.store, path))
            return
        expected = action(_at(self.model, path))
        assert same(action(_at(self.store, path)), expected)

    @rule(data=st.data(), key=st.text("abc", max_size=2), value=_plain_values)
    def set_item(self, data, key, value):
        path = self._pick(data, dict)
        self._both(path, lambda d: d.__setitem__(key, copy.deepcopy(value)))

    @rule(data=st.data())
    def delete_key(self, data):
        path = self._pick(data, dict)
        keys = sorted(_at(self.model, path))
        if keys:
            key = data.draw(st.sampled_from(keys))
            self._both(path, lambda d: d.__delitem__(key))

    @rule(data=st.data(), value=_plain_values)
    def list_append_or_insert(self, data, value):
        path = self._pick(data, list)
        if path is None:
            return
        index = data.draw(st.integers(-6, 6))
        if data.draw(st.booleans()):
            self._both(path, lambda lst: lst.append(copy.deepcopy(value)))
        else:
            self._both(path, lambda lst: lst.insert(index, copy.deepcopy(value)))

    @rule(data=st.data(), value=_plain_values)
    def list_set_item(self, data, value):
        path = self._pick(data, list)
        if path is not None:
            index = data.draw(st.integers(-4, 4))
            self._both(path, lambda lst: lst.__setitem__(index, copy.deepcopy(value)))

    @rule(data=st.data())
    def list_remove_something(self, data):
        path = self._pick(data, list)
        if path is None:
            return
        how = data.draw(st.sampled_from(["del", "pop", "popdefault", "remove", "clear"]))
        index = data.draw(st.integers(-4, 4))
        items = _at(self.model, path)
        victim = copy.deepcopy(items[index]) if -len(items) <= index < len(items) else 99
        actions = {
            "del": lambda lst: lst.__delitem__(index),
            "pop": lambda lst: lst.pop(index),
            "popdefault": lambda lst: lst.pop(),
            "remove": lambda lst: lst.remove(victim),
            "clear": lambda lst: lst.clear(),
        }
        self._both(path, actions[how])

    @rule(data=st.data(), values=st.lists(_plain_values, max_size=3))
    def list_reorder_or_extend(self, data, values):
        path = self._pick(data, list)
        if path is None:
            return
        how = data.draw(st.sampled_from(["reverse", "sort", "sortkey", "extend", "iadd"]))
        actions = {
            "reverse": lambda lst: lst.reverse(),
            "sort": lambda lst: lst.sort(),
            "sortkey": lambda lst: lst.sort(key=repr, reverse=True),
            "extend": lambda lst: lst.extend(copy.deepcopy(values)),
            "iadd": lambda lst: _discard_result(lst.__iadd__(copy.deepcopy(values))),
        }
        self._both(path, actions[how])

    @rule(data=st.data(), element=st.integers(0, 6))
    def set_ops(self, data, element):
        path = self._pick(data, set)
        if path is None:
            return
        how = data.draw(st.sampled_from(["add", "discard", "remove", "clear", "ior", "isub"]))
        actions = {
            "add": lambda s: s.add(element),
            "discard": lambda s: s.discard(element),
            "remove": lambda s: s.remove(element),
            "clear": lambda s: s.clear(),
            "ior": lambda s: _discard_result(s.__ior__({element, element + 1})),
            "isub": lambda s: _discard_result(s.__isub__({element})),
        }
        self._both(path, actions[how])

    @rule(data=st.data(), key=st.text("abc", max_size=2), value=_plain_values)
    def aborted_transaction(self, data, key, value):
        before = copy.deepcopy(self.model)
        path = self._pick(data, list)
        with pytest.raises(RuntimeError), self.store.transaction():
            if path is not None:
                _at(self.store, path).append(1)
            self.store[key] = copy.deepcopy(value)
            raise RuntimeError("abort")
        self.model = before

    @rule(key=st.text("abc", max_size=2), value=_plain_values)
    def committed_transaction(self, key, value):
        with self.store.transaction():
            self.store[key] = copy.deepcopy(value)
            self.store[key + "!"] = 1
        self.model[key] = copy.deepcopy(value)
        self.model[key + "!"] = 1

    @rule()
    def reopen(self):
        self.store.close()
        self.store = open_store(self.path)

    @invariant()
    def memory_and_disk_equal_the_model(self):
        assert same(plain(self.store), self.model)
        assert same(safe_load(self.path), self.model)


def test_store_matches_a_plain_model():
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_module_example_runs(in_tmpdir):
    import doctest

    from klepto.logs import oplog

    assert doctest.testmod(oplog).failed == 0


def test_durable_store_syncs_every_commit(path, monkeypatch):
    syncs = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name, None)
        if real is not None:
            monkeypatch.setattr(os, name, lambda fd, real=real: syncs.append(fd) or real(fd))
    with open_store(path, durability="durable") as store:
        store["l"] = []
        before = len(syncs)
        store["l"].append(1)
        assert len(syncs) > before
    assert safe_load(path) == {"l": [1]}


@pytest.mark.parametrize("value", [1, "x" * 1000], ids=["sealed", "full"])
def test_io_error_at_any_write_of_a_commit(tmp_path, monkeypatch, value):
    """D4: an EIO at the n-th write of one commit, for every n: the error propagates, the
    change stays in memory, the next operation commits it exactly once, and memory equals
    the file. A small operation is one sealed record (one write); a large one is a full
    commit (frame and commit block, commit pointer)."""
    n = 0
    while True:
        n += 1
        path = tmp_path / f"io{n}.oplog"
        store = open_store(path)
        store["l"] = [0]
        with monkeypatch.context() as patch:
            injected = Inject(patch, n)
            try:
                store["l"].append(value)
            except OSError as exc:
                assert "injected" in str(exc)
        store["l"].append("next")
        store.close()
        assert safe_load(path) == {"l": [0, value, "next"]}
        if not injected.fired:
            break
    assert n >= (2 if value == 1 else 3)
