"""file_archive: classic semantics (spec 7.6) and what this implementation adds.

Classic names and state, persistence across reopen, settings recorded in the file,
one commit per update/transaction, compaction (manual and automatic), the saved index
that makes opening fast, literal values for ``serialized=False``, damage reported as
``CorruptArchiveError``, and planted symlinks never written through (E5).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any

import dill
import pytest

from klepto.archives import _filestore, cache, file_archive
from klepto.archives._base import Archive
from klepto.errors import CorruptArchiveError, SignatureError, UnsafeDataError
from klepto.integrity import KEY_ENV


@pytest.fixture
def small_thresholds(monkeypatch):
    """Save tables and compact after a few records, so small tests reach those paths."""
    monkeypatch.setattr(_filestore, "FLUSH_AT", 8)
    monkeypatch.setattr(_filestore, "ADOPT_AT", 16)
    monkeypatch.setattr(_filestore, "COMPACT_MIN", 20)


def raw(name=None, **options):
    return file_archive(name, cached=False, **options)


# --- classic names, state and mapping behaviour ---------------------------------------------


def test_default_names_and_state(in_tmpdir):
    pkl = raw()
    assert pkl.name == "memo.pkl" and os.path.exists("memo.pkl")
    assert pkl.__state__ == {"id": "memo.pkl", "serialized": True, "protocol": None}
    assert raw(protocol="json").name == "memo.json"
    source = raw(serialized=False)
    assert source.name == "memo.py" and source.__state__["serialized"] is False
    assert raw("results", serialized=False).name == "results.py"
    assert raw("results.pyc", serialized=False).name == "results.pyc"
    nested = raw(str(in_tmpdir / "sub.pkl"))
    assert nested.name == "sub.pkl" and nested.state["id"] == str(in_tmpdir / "sub.pkl")
    for attribute in ("name", "state", "archive"):
        with pytest.raises(ValueError):
            setattr(pkl, attribute, "other")


def test_repr_raw_and_cached(in_tmpdir):
    archive = raw("fc.pkl")
    archive["a"] = 1
    assert repr(archive) == "file_archive('fc.pkl', {'a': 1}, cached=False)"
    front = file_archive("fc2.pkl", {"a": 1})
    assert isinstance(front, cache) and isinstance(front, file_archive)
    assert repr(front) == "file_archive('fc2.pkl', {'a': 1}, cached=True)"
    assert not isinstance(archive, dict) and isinstance(archive, Archive)


def test_mapping_api_and_key_errors(in_tmpdir):
    archive = raw()
    with pytest.raises(KeyError):
        archive["missing"]
    with pytest.raises(KeyError):
        del archive["missing"]
    archive.update({"a": 1, "b": 2})
    assert archive.fromkeys("xy", 0) == {"x": 0, "y": 0}
    assert archive == {"a": 1, "b": 2} and archive != {"a": 1}
    assert archive != raw("other.pkl")
    assert sorted(archive.keys()) == ["a", "b"]
    assert sorted(archive.items()) == [("a", 1), ("b", 2)]
    assert sorted(archive.values()) == [1, 2]
    archive["c"] = 3
    assert archive.popitem() == ("c", 3)  # the most recently written entry
    assert archive.setdefault("a", 9) == 1 and archive.setdefault("d", 4) == 4
    assert archive.add("d", 5) is False and archive.add("e", 5) is True
    assert archive.pop("e") == 5 and archive.pop("e", None) is None
    assert archive.popkeys(["a", "b"]) == [1, 2]
    assert archive.__asdict__() == {"d": 4}


def test_keys_keep_their_types_and_order(in_tmpdir):
    archive = raw()
    keys = [3, "3", (3,), b"3", 3.5, None, frozenset({1}), ("x", (1, 2))]
    for i, key in enumerate(keys):
        archive[key] = i
    assert list(archive) == keys  # write order
    archive[3] = "again"  # 3.0 would be the same key
    assert archive[3.0] == "again" and list(archive)[-1] == 3


def test_copy_and_drop(in_tmpdir):
    archive = raw("orig.pkl")
    archive.update(a=1)
    same = archive.copy()
    same["b"] = 2
    assert archive["b"] == 2
    duplicate = archive.copy("copy.pkl")
    assert duplicate.name == "copy.pkl" and duplicate == {"a": 1, "b": 2}
    duplicate["c"] = 3
    assert "c" not in archive  # a real copy of the file, not a second view
    duplicate.__drop__()
    assert duplicate.closed
    assert not [name for name in os.listdir(".") if name.startswith("copy.pkl")]
    assert raw("orig.pkl") == {"a": 1, "b": 2}


def test_pickles_by_reference(in_tmpdir):
    archive = raw("ref.pkl")
    archive["big"] = "x" * 10_000
    for module in (pickle, dill):
        blob = module.dumps(archive)
        assert len(blob) < 2000  # location and settings, never the contents
        clone = module.loads(blob)
        assert clone["big"] == "x" * 10_000
        clone["new"] = module.__name__
        assert archive["new"] == module.__name__
    os.unlink("ref.pkl")
    assert len(pickle.loads(pickle.dumps(archive))) == 0  # pickling recreates a missing file


# --- persistence, atomic groups, settings ---------------------------------------------------


def test_persists_across_reopen_and_processes_see_commits(in_tmpdir):
    first = raw("p.pkl")
    first.update({i: {"v": i} for i in range(50)})
    second = raw("p.pkl")
    assert second[7] == {"v": 7} and len(second) == 50
    del first[7]
    first["new"] = 1
    assert 7 not in second and second["new"] == 1 and len(second) == 50


def test_update_and_transaction_are_one_commit(in_tmpdir):
    archive = raw()
    records = archive._store.main
    before = records.commit_seq
    archive.update({i: i for i in range(100)})
    assert records.commit_seq == before + 1
    with archive.transaction():
        archive["a"] = 1
        del archive[0]
        assert archive["a"] == 1 and 0 not in archive  # reads see the transaction's writes
    assert records.commit_seq == before + 2
    with pytest.raises(RuntimeError), archive.transaction():
        archive["b"] = 2
        archive.clear()
        raise RuntimeError("abort")
    assert records.commit_seq == before + 2
    assert len(archive) == 100 and "b" not in archive and archive["a"] == 1
    assert raw() == archive.__asdict__()


def test_settings_are_recorded_and_enforced(in_tmpdir, monkeypatch):
    raw("lit.py", serialized=False)["k"] = [1, 2]
    again = raw("lit.py")
    assert again.settings()["serializer"] == "literal" and again["k"] == [1, 2]
    assert again.__state__["serialized"] is False
    with pytest.raises(ValueError, match="serialized"):
        raw("lit.py", serialized=True)
    raw("z.pkl", compression=5, protocol=3)["a"] = 1
    assert raw("z.pkl").settings() | {} == {
        "kind": "file",
        "format": 1,
        "serialized": True,
        "serializer": "dill",
        "protocol": 3,
        "compression": 5,
        "signed": False,
    }
    with pytest.raises(ValueError, match="compression"):
        raw("z.pkl", compression=0)
    with pytest.raises(ValueError, match="protocol"):
        raw("z.pkl", protocol=2)
    with pytest.raises(ValueError, match="unsigned"):
        raw("z.pkl", key="secret")


def test_signed_and_safe(in_tmpdir, monkeypatch):
    signed = raw("s.pkl", key="secret")
    signed["f"] = len
    assert raw("s.pkl", key="secret", safe=True)["f"] is len
    with pytest.raises(SignatureError):
        raw("s.pkl")
    assert pickle.loads(pickle.dumps(signed))["f"] is len  # an explicit key travels along
    monkeypatch.setenv(KEY_ENV, "secret")
    from_env = raw("s.pkl")
    assert from_env["f"] is len
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SignatureError):
        pickle.loads(pickle.dumps(from_env))  # a key from the environment does not
    with pytest.raises(UnsafeDataError):
        raw("unsafe.pkl", safe=True)
    assert not os.path.exists("unsafe.pkl")  # refused before anything was created
    plain = raw("plain.json", protocol="safe", safe=True)
    plain[("t", 1)] = {"x": b"bytes"}
    assert plain[("t", 1)] == {"x": b"bytes"}


def test_durability_options(in_tmpdir):
    assert raw("d.pkl", durable=True)._store.main.durable
    assert raw("d.pkl", durability="durable")._store.main.durable
    assert not raw("d.pkl")._store.main.durable
    with pytest.raises(ValueError):
        raw("d.pkl", durable=True, durability="flush")


# --- serialized=False: literals only, never executed ----------------------------------------

LITERALS = [
    0,
    -17,
    2**80,
    3.25,
    1 + 2j,
    "text é",
    b"\x00bytes",
    True,
    None,
    (1, (2, "x")),
    [1, [2.5, None]],
    {"a": {1: (2, 3)}},
    {1, 2, 3},
    (),
]


@pytest.mark.parametrize("value", LITERALS, ids=repr)
def test_literal_values_round_trip(in_tmpdir, value):
    archive = raw(serialized=False)
    archive["v"] = value
    assert raw(serialized=False)["v"] == value
    assert type(raw("memo.py")["v"]) is type(value)


@pytest.mark.parametrize(
    "value", [object(), len, lambda: 1, frozenset({1}), range(3), float("inf")], ids=repr
)
def test_non_literals_are_refused(in_tmpdir, value):
    archive = raw(serialized=False)
    with pytest.raises(ValueError, match="literal"):
        archive["v"] = value
    assert len(archive) == 0


@pytest.mark.parametrize("key", [frozenset({1}), ("k", float("nan")), len], ids=repr)
def test_non_literal_keys_are_refused(in_tmpdir, key):
    archive = raw(serialized=False)
    with pytest.raises(ValueError, match="literal"):
        archive[key] = 1
    assert len(archive) == 0


def test_literal_files_never_execute_code(in_tmpdir, tmp_path):
    marker = tmp_path / "PWNED"
    archive = raw(serialized=False)
    archive["k"] = "ok"
    with open("memo.py", "ab") as handle:  # appended source is not part of any commit
        handle.write(f"\nimport os; open({str(marker)!r}, 'w')\n".encode())
    assert raw(serialized=False)["k"] == "ok"
    assert not marker.exists()


# --- compaction and the saved index ----------------------------------------------------------


def test_manual_compaction_reclaims_space(in_tmpdir):
    archive = raw(compact_ratio=None)
    reader = raw()
    for round_ in range(20):
        archive.update({i: "v" * 200 + str(round_) for i in range(100)})
    for i in range(50):
        del archive[i]
    expected = archive.__asdict__()
    grown = os.path.getsize("memo.pkl")
    file_id = archive._store.main.file_id
    archive.compact()
    assert os.path.getsize("memo.pkl") < grown / 10
    assert archive._store.main.file_id != file_id
    assert archive.__asdict__() == expected and list(archive) == list(expected)
    assert reader.__asdict__() == expected  # noticed the new file
    archive["after"] = 1
    assert reader["after"] == 1 and raw().__asdict__() == {**expected, "after": 1}


def test_automatic_compaction(in_tmpdir, small_thresholds):
    archive = raw()
    other = raw()
    ids = {archive._store.main.file_id}
    model = {}
    rng = random.Random(1)
    for step in range(400):
        key = rng.randrange(30)
        if rng.random() < 0.3 and key in model:
            del archive[key]
            del model[key]
        else:
            archive[key] = model[key] = step
        ids.add(archive._store.main.file_id)
        if step % 37 == 0:
            assert other.__asdict__() == model
    assert len(ids) > 3  # compacted several times
    assert archive.__asdict__() == model == raw().__asdict__() == other.__asdict__()
    assert archive._store.index.dead <= max(_filestore.COMPACT_MIN, 2 * len(model))
    assert raw(compact_ratio=None)._store.compact_ratio is None


def test_opening_uses_the_saved_index(in_tmpdir, small_thresholds, monkeypatch):
    archive = raw()
    archive.update({i: i for i in range(100)})  # one commit: saved as one table
    for i in range(100, 140):
        archive[i] = i
    assert os.path.exists("memo.pkl.idx")
    replayed = []
    original = _filestore.FileStore._replay
    monkeypatch.setattr(
        _filestore.FileStore,
        "_replay",
        lambda self, start, stop: (replayed.append(stop - start), original(self, start, stop)),
    )
    reopened = raw()
    assert reopened._store.index.tables and sum(replayed) < _filestore.FLUSH_AT
    assert reopened.__asdict__() == {i: i for i in range(140)} and len(reopened) == 140


@pytest.mark.parametrize("damage", ["delete", "garbage", "stale", "symlink"])
def test_unusable_saved_index_is_ignored(in_tmpdir, small_thresholds, damage, caplog, tmp_path):
    archive = raw()
    for i in range(60):
        archive[i] = i
    if damage == "delete":
        os.unlink("memo.pkl.idx")
    elif damage == "garbage":
        with open("memo.pkl.idx", "r+b") as handle:
            handle.seek(4200)
            handle.write(os.urandom(64))
    elif damage == "stale":
        with open("memo.pkl.idx", "rb") as handle:
            saved = handle.read()
        for i in range(60, 70):
            archive[i] = i
        os.unlink("memo.pkl.idx")
        archive.compact()  # a new file; the old index no longer describes it
        with open("memo.pkl.idx", "wb") as handle:
            handle.write(saved)
    else:
        os.unlink("memo.pkl.idx")
        (tmp_path / "target").write_bytes(b"target")
        os.symlink(tmp_path / "target", "memo.pkl.idx")
    expected = archive.__asdict__()
    with caplog.at_level(logging.WARNING, logger="klepto.archives.file"):
        reopened = raw()
        assert reopened.__asdict__() == expected and len(reopened) == len(expected)
        for i in range(100, 120):
            reopened[i] = i  # saving a new index replaces the unusable one
    assert raw().__asdict__() == {**expected, **{i: i for i in range(100, 120)}}
    assert not os.path.islink("memo.pkl.idx")
    if damage == "symlink":
        assert (tmp_path / "target").read_bytes() == b"target"


def test_index_survives_random_operations_across_objects(in_tmpdir, small_thresholds):
    """Many saved tables, merges, tombstones, clears and compactions, three objects."""
    archives = [raw() for _ in range(3)]
    model: dict = {}
    rng = random.Random(7)
    for step in range(1500):
        archive = rng.choice(archives)
        key = rng.randrange(120)
        roll = rng.random()
        if roll < 0.25:
            assert archive.pop(key, None) == model.pop(key, None)
        elif roll < 0.27:
            archive.update({k: step for k in range(key, key + 20)})
            model.update({k: step for k in range(key, key + 20)})
        elif roll < 0.275:
            archive.clear()
            model.clear()
        else:
            archive[key] = model[key] = (step, "x" * rng.randrange(300))
        if step % 100 == 0:
            checker = rng.choice(archives)
            assert len(checker) == len(model)
            assert checker.__asdict__() == model
    for archive in [*archives, raw()]:
        assert archive.__asdict__() == model and len(archive) == len(model)


# --- large values, damage, symlinks -----------------------------------------------------------


def test_large_values(in_tmpdir):
    archive = raw()
    big = os.urandom(5 << 20)
    archive["big"] = big
    archive["small"] = 1
    assert raw()["big"] == big and raw()["small"] == 1


def _streamed(monkeypatch) -> list[int]:
    """Count the large records read as checked files (klepto._recordbody)."""
    from klepto import _recordbody

    made: list[int] = []
    original = _recordbody.CheckedBody._verify

    def verify(self, crc):
        made.append(len(self))
        original(self, crc)

    monkeypatch.setattr(_recordbody.CheckedBody, "_verify", verify)
    return made


def _read_whole(monkeypatch) -> list[int]:
    """Count the large records read whole into one buffer (out-of-band pickle buffers)."""
    from klepto import _recordbody

    made: list[int] = []
    original = _recordbody.LargeRecord.whole

    def whole(self):
        made.append(len(self))
        return original(self)

    monkeypatch.setattr(_recordbody.LargeRecord, "whole", whole)
    return made


@pytest.mark.parametrize("protocol", [None, 0, 2, 4])
def test_large_values_load_straight_from_the_file(in_tmpdir, monkeypatch, protocol):
    """Arrays, byte strings and text opcodes (protocol 0 reads lines) of large values come
    back equal, and writable, whether the entry is recent or in the saved index."""
    np = pytest.importorskip("numpy")
    made, whole = _streamed(monkeypatch), _read_whole(monkeypatch)
    archive = raw(protocol=protocol)
    array = np.arange(100_000, dtype="f8")
    blob = os.urandom(400_000)
    archive["array"] = array
    archive[("blob", 1)] = [blob, "tail"]
    reopened = raw()
    loaded = reopened["array"]
    assert np.array_equal(loaded, array) and loaded.flags.writeable
    loaded[0] = -1.0  # a private copy: the file is not touched
    assert reopened["array"][0] == 0.0
    assert reopened[("blob", 1)] == [blob, "tail"]
    if protocol is None:  # protocol 5: the array's data is out of band, read in place
        assert (len(whole), len(made)) == (2, 1)
    else:  # every large read took the streamed path
        assert (len(whole), len(made)) == (0, 3)


def test_large_arrays_go_out_of_band(in_tmpdir, monkeypatch):
    """A large array or byte array is written from its own memory and read back in place:
    equal, writable, private, in every way of reading it (get, items, values)."""
    np = pytest.importorskip("numpy")
    whole = _read_whole(monkeypatch)
    archive = raw()
    value = {
        "x": np.arange(200_000, dtype="i4").reshape(400, 500),
        "y": bytearray(b"y" * 100_000),
        "small": np.arange(5),  # stays in the pickle
        "fortran": np.asfortranarray(np.ones((300, 300))),
    }
    archive["v"] = value
    archive["plain"] = np.arange(10)
    assert raw()["plain"].tolist() == list(range(10)) and not whole  # small: not out of band
    for loaded in (raw()["v"], dict(raw().items())["v"], next(iter(raw().values()))):
        assert np.array_equal(loaded["x"], value["x"]) and loaded["x"].flags.writeable
        assert loaded["y"] == value["y"] and isinstance(loaded["y"], bytearray)
        assert np.array_equal(loaded["fortran"], value["fortran"])
        assert loaded["fortran"].flags.f_contiguous and loaded["small"].tolist() == [0, 1, 2, 3, 4]
        loaded["x"][0, 0] = -7
    assert raw()["v"]["x"][0, 0] == 0 and whole


def test_large_value_of_a_dill_only_object(in_tmpdir, monkeypatch):
    made = _streamed(monkeypatch)
    scale = 3

    def times(x):  # a closure: only dill pickles it
        return x * scale

    archive = raw()
    archive["f"] = (times, b"x" * 300_000)
    function, padding = raw()["f"]
    assert function(2) == 6 and padding == b"x" * 300_000 and made


def _bytes_value(fill: bytes) -> bytes:
    return fill * 300_000


def _array_value(fill: bytes) -> Any:  # out of band: read whole, checked, used in place
    np = pytest.importorskip("numpy")
    return np.frombuffer(fill * 400_000, dtype="u1").copy()


@pytest.mark.parametrize("make", [_bytes_value, _array_value], ids=["streamed", "out-of-band"])
def test_damage_in_a_large_value_is_reported_not_loaded(
    in_tmpdir, monkeypatch, small_thresholds, make
):
    made, whole = _streamed(monkeypatch), _read_whole(monkeypatch)
    archive = raw()
    archive["kept"] = make(b"k")
    archive["big"] = make(b"A")
    for i in range(20):  # the large entries end up in the saved index: opening skips them
        archive[i] = i
    flip_inside("memo.pkl", b"A" * 1000)
    reopened = raw()
    with pytest.raises(CorruptArchiveError) as caught:
        reopened["big"]
    assert caught.value.key == "big" and caught.value.path.endswith("memo.pkl")
    assert caught.value.offset is not None and (made or whole)
    assert bytes(reopened["kept"]) == bytes(make(b"k"))


def test_large_values_read_by_threads_at_once(in_tmpdir):
    import threading

    archive = raw()
    values = {i: bytes([i]) * (300_000 + i) for i in range(8)}
    archive.update(values)
    reopened = raw()
    wrong: list[int] = []

    def read(i: int) -> None:
        for _ in range(20):
            if reopened[i] != values[i]:
                wrong.append(i)

    threads = [threading.Thread(target=read, args=(i,)) for i in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_foreign_file_is_refused(in_tmpdir):
    with open("memo.pkl", "wb") as handle:
        pickle.dump({"classic": "klepto"}, handle)
    with pytest.raises(CorruptArchiveError, match="classic klepto") as caught:
        raw()
    assert caught.value.path.endswith("memo.pkl")
    open("empty.pkl", "wb").close()
    with pytest.raises(CorruptArchiveError):
        raw("empty.pkl")


def flip_inside(path: str, needle: bytes) -> None:
    with open(path, "r+b") as handle:
        data = handle.read()
        handle.seek(data.rindex(needle) + 10)
        handle.write(b"Z")


def test_damaged_value_names_file_offset_and_key(in_tmpdir, small_thresholds):
    archive = raw()
    archive["a"] = "A" * 100
    archive["b"] = "B" * 100
    # "a" and "b" end up in the saved index and behind the record file's index checkpoint
    # (a full commit after about a thousand one-record commits): opening does not read them
    for i in range(1100):
        archive[i] = i
    flip_inside("memo.pkl", b"A" * 100)
    reopened = raw()
    assert reopened["b"] == "B" * 100 and len(reopened) == 1102
    with pytest.raises(CorruptArchiveError) as caught:
        reopened["a"]
    error = caught.value
    assert error.path.endswith("memo.pkl") and error.key == "a" and error.offset is not None
    with pytest.raises(CorruptArchiveError):
        reopened.__asdict__()


def test_damage_in_records_read_on_open_is_reported_on_open(in_tmpdir):
    archive = raw()
    archive["a"] = "A" * 100
    flip_inside("memo.pkl", b"A" * 100)
    with pytest.raises(CorruptArchiveError) as caught:
        raw()
    assert caught.value.path.endswith("memo.pkl") and caught.value.offset is not None


def test_damaged_tail_raises_unless_repaired(in_tmpdir, caplog):
    archive = raw()
    archive["kept"] = 1
    archive["last"] = 2
    archive.close()
    os.truncate("memo.pkl", os.path.getsize("memo.pkl") - 20)
    with pytest.raises(CorruptArchiveError):
        raw()
    with caplog.at_level(logging.WARNING):
        repaired = raw(repair=True)
    assert repaired.__asdict__() == {"kept": 1} and "reading as of commit" in caplog.text
    repaired["new"] = 3  # the write truncates the damaged commit
    assert raw().__asdict__() == {"kept": 1, "new": 3}


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_planted_symlinks_are_never_written_through(in_tmpdir, tmp_path, small_thresholds):
    """E5: links at the archive, its lock and its index; every write path exercised."""
    target = tmp_path / "passwd-copy"
    target.write_bytes(b"root:x:0:0::/root:/bin/sh\n" * 50)
    digest = _sha(target)
    os.symlink(target, "memo.pkl")
    with pytest.raises(OSError, match="symbolic link"):
        raw()
    os.unlink("memo.pkl")
    os.symlink(target, "memo.pkl.lock")
    with pytest.raises(OSError, match="symbolic link"):
        raw()
    os.unlink("memo.pkl.lock")
    for name in ("memo.pkl.idx", "memo.pkl.idx.lock", "copy.pkl", "copy.pkl.idx"):
        os.symlink(target, name)
    archive = raw()
    for i in range(100):
        archive[i % 30] = i  # saves tables and compacts
    archive.copy("copy.pkl")
    assert raw("copy.pkl") == archive.__asdict__()
    assert _sha(target) == digest
    assert not os.path.islink("copy.pkl")


def test_large_values_stream_without_preadv(in_tmpdir, monkeypatch):
    from klepto import _fs

    made = _streamed(monkeypatch)
    raw()["big"] = b"z" * 300_000
    monkeypatch.setattr(_fs, "_HAS_PREADV", False)  # as on platforms without os.preadv
    assert raw()["big"] == b"z" * 300_000 and made
