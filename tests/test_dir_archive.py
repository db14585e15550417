"""dir_archive: classic semantics (spec 7.7), the deliberate fixes, and hostile input.

Crash and concurrency tests with real processes live in tests/faults/test_archive_faults.py
and tests/faults/test_store_faults.py.
"""

from __future__ import annotations

import os
import pickle
import stat
import threading

import dill
import pytest

from klepto import archives
from klepto.archives import cache, dir_archive
from klepto.errors import CorruptArchiveError, SignatureError, UnsafeDataError
from klepto.integrity import KEY_ENV

np = pytest.importorskip("numpy")

CLASSIC_STATE = {"fast", "serialized", "compression", "permissions", "memmode", "memsize"}
FLAGS = [{}, {"fast": True}, {"compression": 3}, {"memmode": "r+"}, {"serialized": False}]


def same(a, b):
    """Equality that also works for numpy arrays (and checks their dtype and shape)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    return type(a) is type(b) and a == b


# --- construction and classic state ---------------------------------------------------------


def test_default_root_is_memo_in_cwd(in_tmpdir):
    d = dir_archive(cached=False)
    assert (in_tmpdir / "memo").is_dir()
    assert d.name == "memo"
    assert d.state["id"] == str(in_tmpdir / "memo")
    assert set(d.state) == CLASSIC_STATE | {"protocol", "id"}
    assert d.state["serialized"] is True and d.state["compression"] == 0
    assert d.state["fast"] is False and d.state["memsize"] == 100


def test_state_normalisation(tmp_path):
    backend = archives._dir_archive  # the classic positional signature is the backend's
    literal = backend(str(tmp_path / "a"), False, 3, None, memmode="r", fast=True)
    assert (literal.state["compression"], literal.state["memmode"]) == (0, None)
    assert literal.state["fast"] is False
    assert dir_archive(str(tmp_path / "b"), compression=2, cached=False).state["fast"] is True
    assert dir_archive(str(tmp_path / "c"), memmode="c", cached=False).state["fast"] is True
    with pytest.raises(ValueError):
        dir_archive(str(tmp_path / "d"), memmode="x", cached=False)


def test_repr_and_name(tmp_path):
    d = dir_archive(str(tmp_path / "foo"), cached=False)
    d["a"] = 1
    assert repr(d) == "dir_archive('foo', {'a': 1}, cached=False)"
    front = dir_archive(str(tmp_path / "foo"), {"b": 2})
    assert repr(front) == "dir_archive('foo', {'b': 2}, cached=True)"
    for attribute in ("name", "state", "archive"):
        with pytest.raises(ValueError):
            setattr(d, attribute, "x")
    d._fast = True  # arbitrary attributes are allowed (classic tests set them)
    assert d._fast is True


def test_factory_and_cache_front(tmp_path):
    root = str(tmp_path / "front")
    front = dir_archive(root, {"a": 1})
    assert isinstance(front, cache) and isinstance(front, dir_archive)
    assert isinstance(front.archive, archives._dir_archive)
    assert len(front.archive) == 0  # the seed dict goes into memory only
    front.dump()
    assert dir_archive(root, cached=False)["a"] == 1
    assert front.__type__ is dir_archive


# --- spec 7.7 test_readwrite MUSTs ----------------------------------------------------------


def test_helpers_and_basic_round_trip(in_tmpdir):
    d = dir_archive("foo", cached=False)
    key = "1234TESTMETESTMETESTME1234"
    assert d._getdir(key) == d._mkdir(key)
    assert d._mkdir(key) == d._mkdir(key)
    assert key not in d  # the helper prepares a location, it stores nothing
    d[key] = [1, 2, 3, 4, 5]
    assert d[key] == [1, 2, 3, 4, 5]
    assert os.path.isfile(d._getdir(key))
    d._rmdir(key)
    d._rmdir(key)  # a second removal is ignored
    assert key not in d
    assert d._fname(key) == os.path.basename(d._getdir(key))


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_readwrite_values(in_tmpdir, flags):
    d = dir_archive(cached=False, **flags)
    square = lambda x: x * x
    values = {"one": 1, "string": "1", "none": None}
    if flags.get("serialized", True):
        values |= {"min": min, "inf": np.inf, "ptp": np.ptp, "array": np.arange(12.0)}
        values["struct"] = np.array([(1, 2.5)], dtype=[("x", "i4"), ("y", "f8")])
        values["fortran"] = np.asfortranarray(np.arange(6).reshape(2, 3))
        d["square"] = square
        assert d["square"](4) == 16
    for key, value in values.items():
        d[key] = value
    for key, value in values.items():
        assert same(d[key], value) or (key in ("min", "ptp") and d[key] == value), key
    reopened = dir_archive(cached=False)
    assert {k for k in reopened} >= set(values)
    assert same(reopened["array" if "array" in values else "one"], values.get("array", 1))


def test_literal_mode_refuses_code(tmp_path):
    d = dir_archive(str(tmp_path / "lit"), serialized=False, cached=False)
    for bad in (min, lambda x: x, object(), float("nan")):
        with pytest.raises(ValueError, match="literals only"):
            d["bad"] = bad
    assert "bad" not in d and len(d) == 0
    d[(1, "a")] = {"x": [1, 2.5, None, b"z", {1, 2}], "y": (True, -0.0, 3j)}
    assert d[(1, "a")] == {"x": [1, 2.5, None, b"z", {1, 2}], "y": (True, -0.0, 3j)}
    with pytest.raises(ValueError):
        d[min] = 1  # keys are literals too


# --- fixed classic quirks -------------------------------------------------------------------


def test_keys_stay_distinct(tmp_path):
    d = dir_archive(str(tmp_path / "k"), cached=False)
    keys = [1, "1", "a-b", "a_b", "A", "a", "\u00e9", "e\u0301", (1, 2), "(1, 2)", b"1"]
    for i, key in enumerate(keys):
        d[key] = i
    assert len(d) == len(keys)
    for i, key in enumerate(keys):
        assert d[key] == i
    assert sorted(map(repr, d)) == sorted(map(repr, keys))


def test_missing_keys(tmp_path):
    d = dir_archive(str(tmp_path / "m"), cached=False)
    with pytest.raises(KeyError):
        del d["nope"]
    with pytest.raises(KeyError):
        d["nope"]
    assert d.get("nope") is None and d.get("nope", 3) == 3
    assert d.pop("nope", "dflt") == "dflt"
    with pytest.raises(KeyError):
        d.pop("nope")
    with pytest.raises(KeyError):
        d.popitem()


def test_setdefault_pop_popitem(tmp_path):
    d = dir_archive(str(tmp_path / "s"), cached=False)
    assert d.setdefault("a", 1) == 1
    assert d.setdefault("a", 2) == 1  # classic quirk (always stores) fixed
    assert d["a"] == 1
    d["b"] = 2
    assert d.pop("b") == 2 and "b" not in d
    assert d.popitem() == ("a", 1)
    assert len(d) == 0 and os.listdir(d.state["id"]) == [".klepto"]


def test_get_swallows_only_key_errors(tmp_path):
    d = dir_archive(str(tmp_path / "g"), cached=False)
    d["k"] = "value"
    with open(d._getdir("k"), "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(CorruptArchiveError) as caught:
        d.get("k")
    assert d._getdir("k") in str(caught.value) and "'k'" in str(caught.value)


def test_clear_update_and_equality(tmp_path):
    d = dir_archive(str(tmp_path / "u"), cached=False)
    d.update({"a": 1}, b=2)
    d.update(dir_archive(str(tmp_path / "v"), {"c": 3}, cached=False))
    assert d == {"a": 1, "b": 2, "c": 3}
    assert d != {"a": 1}
    (tmp_path / "u" / "notes.txt").write_text("mine")
    d.clear()
    assert len(d) == 0 and (tmp_path / "u" / "notes.txt").exists()


def test_copy_and_drop(tmp_path):
    d = dir_archive(str(tmp_path / "orig"), compression=4, cached=False)
    d.update(a=1, b=[2])
    same_root = d.copy()
    assert same_root.state == d.state and same_root == d
    duplicate = d.copy(str(tmp_path / "dup"))
    assert duplicate.name == "dup" and duplicate.state["compression"] == 4
    assert duplicate == {"a": 1, "b": [2]}
    duplicate["c"] = 3
    assert "c" not in d
    duplicate.__drop__()
    assert not (tmp_path / "dup").exists()
    (tmp_path / "orig" / "mine.txt").write_text("keep me")
    with pytest.raises(OSError, match=r"mine\.txt"):
        d.__drop__()
    assert (tmp_path / "orig" / "mine.txt").read_text() == "keep me"
    assert len(dir_archive(str(tmp_path / "orig"), cached=False)) == 0


def test_pickles_by_reference(tmp_path):
    d = dir_archive(str(tmp_path / "p"), compression=2, memmode="r", cached=False)
    d["a"] = 1
    for module in (pickle, dill):
        clone = module.loads(module.dumps(d))
        assert clone.state == d.state and clone["a"] == 1
    assert b"'a'" not in pickle.dumps(d) and len(pickle.dumps(d)) < 1000


def test_threads_write_distinct_keys(tmp_path):
    d = dir_archive(str(tmp_path / "t"), cached=False)

    def write(thread):
        for i in range(50):
            d[(thread, i)] = i

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(d) == 200 and d[(3, 49)] == 49


def test_no_directory_listing_per_operation(tmp_path, monkeypatch):
    d = dir_archive(str(tmp_path / "n"), cached=False)
    d["warm"] = 0

    def refuse(*args, **kwds):
        raise AssertionError("a single-key operation listed the directory")

    monkeypatch.setattr(os, "scandir", refuse)
    monkeypatch.setattr(os, "listdir", refuse)
    d["a"] = 1
    assert d["a"] == 1 and "a" in d and d.setdefault("b", 2) == 2
    assert d.pop("a") == 1
    del d["b"]


# --- settings recorded in the archive -------------------------------------------------------


def test_settings_are_honoured_on_reopen(tmp_path):
    root = str(tmp_path / "st")
    dir_archive(root, compression=5, protocol=3, cached=False)["a"] = 1
    again = dir_archive(root, cached=False)
    assert again.state["compression"] == 5 and again.state["fast"] is True
    assert again.settings()["protocol"] == 3 and again["a"] == 1
    for conflict in (
        {"compression": 1},
        {"serialized": False},
        {"protocol": 2},
        {"protocol": "json"},
    ):
        with pytest.raises(ValueError):
            dir_archive(root, cached=False, **conflict)
    assert dir_archive(root, compression=5, cached=False)["a"] == 1


def test_settings_file_damage_is_detected(tmp_path):
    root = tmp_path / "sd"
    dir_archive(str(root), cached=False)["a"] = 1
    text = (root / ".klepto").read_text()
    (root / ".klepto").write_text(text.replace('"dill"', '"json"'))
    with pytest.raises(CorruptArchiveError, match="checksum"):
        dir_archive(str(root), cached=False)
    (root / ".klepto").write_text(text[:10])
    with pytest.raises(CorruptArchiveError):
        dir_archive(str(root), cached=False)


def test_json_protocol(tmp_path):
    d = dir_archive(str(tmp_path / "j"), protocol="json", cached=False)
    assert d.state["protocol"] == "json"
    d["a"] = {"x": [1, 2]}
    d[1] = "one"
    assert d["a"] == {"x": [1, 2]} and d[1] == "one"
    with pytest.raises(ValueError, match="cannot store the key"):
        d[(1, 2)] = 3
    assert (1, 2) not in d and len(d) == 2


def test_signed_and_safe_modes(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    root = str(tmp_path / "sig")
    with pytest.raises(UnsafeDataError):
        dir_archive(root, safe=True, cached=False)
    d = dir_archive(root, key="s3cret", safe=True, cached=False)
    d["f"] = lambda x: x + 1
    assert d["f"](1) == 2
    assert pickle.loads(pickle.dumps(d))["f"](2) == 3  # an explicit key travels along
    monkeypatch.setenv(KEY_ENV, "from-env")
    from_env = dir_archive(str(tmp_path / "env"), cached=False)
    assert from_env.settings()["signed"] and b"from-env" not in pickle.dumps(from_env)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SignatureError):
        dir_archive(root, cached=False)
    with pytest.raises(SignatureError):
        dir_archive(root, key="wrong", cached=False)["f"]
    plain = str(tmp_path / "plain")
    dir_archive(plain, cached=False)
    with pytest.raises(ValueError, match="unsigned"):
        dir_archive(plain, key="s3cret", cached=False)
    safe_json = dir_archive(str(tmp_path / "sj"), protocol="json", safe=True, cached=False)
    safe_json["a"] = [1]
    assert safe_json["a"] == [1]


def test_permissions(tmp_path):
    d = dir_archive(str(tmp_path / "modes"), cached=False)
    d["a"] = 1
    root = tmp_path / "modes"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in root.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    shared = dir_archive(str(tmp_path / "shared"), permissions=0o750, cached=False)
    shared["a"] = 1
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o750
    assert stat.S_IMODE(os.stat(shared._getdir("a")).st_mode) == 0o640


# --- memory-mapped arrays -------------------------------------------------------------------


def test_memmode_maps_arrays(tmp_path):
    root = str(tmp_path / "mm")
    writer = dir_archive(root, fast=True, cached=False)
    writer["a"] = np.arange(10_000.0)
    readonly = dir_archive(root, memmode="r", cached=False)["a"]
    assert isinstance(readonly, np.memmap) and not readonly.flags.writeable
    assert readonly[123] == 123.0
    private = dir_archive(root, memmode="r+", cached=False)["a"]
    private[0] = 99.0  # copy-on-write: the stored entry is unchanged
    assert writer["a"][0] == 0.0 and dir_archive(root, cached=False)["a"].flags.writeable
    writer["a"] = np.zeros(3)  # replacing the entry leaves existing maps valid
    assert readonly[123] == 123.0


# --- errors are never swallowed -------------------------------------------------------------


@pytest.mark.parametrize("failing", ["writev", "replace", "fsync"])
def test_write_errors_propagate_and_leave_no_temp(tmp_path, monkeypatch, failing):
    import errno

    d = dir_archive(str(tmp_path / "err"), durable=True, cached=False)
    d["a"] = "old"

    def no_space(*args, **kwds):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, no_space)
    with pytest.raises(OSError, match="No space"):
        d["a"] = "new"
    with pytest.raises(OSError, match="No space"):
        d["b"] = "new"
    monkeypatch.undo()
    assert d.__asdict__() == {"a": "old"}
    assert sorted(os.listdir(tmp_path / "err")) == [".klepto", os.path.basename(d._getdir("a"))]


# --- formats: dill compatibility of the fast paths, array blocks -----------------------------


def test_main_module_objects_are_pickled_by_value(tmp_path):
    """What dill pickles by value (a class defined in __main__) reads in another process."""
    import subprocess
    import sys

    root = str(tmp_path / "main")
    write = (
        "from klepto.archives import dir_archive\n"
        "class Point:\n    def __init__(self, x): self.x = x\n"
        f"d = dir_archive({root!r}, cached=False)\n"
        "d['p'] = Point(3)\nd['f'] = lambda y: y * 2\n"
    )
    read = (
        "from klepto.archives import dir_archive\n"
        f"d = dir_archive({root!r}, cached=False)\n"
        "print(type(d['p']).__name__, d['p'].x, d['f'](4))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    for script in (write, read):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Point", "3", "8"]


def test_arrays_become_blocks_by_size(tmp_path):
    root = str(tmp_path / "blocks")
    plain = dir_archive(root, cached=False)
    plain["small"], plain["big"] = np.arange(10), np.arange(1000)
    mapped = dir_archive(root, memmode="r", cached=False)
    assert not isinstance(mapped["small"], np.memmap)  # inside the pickle
    assert isinstance(mapped["big"], np.memmap)
    mapped["tiny"] = np.arange(3)  # memmode makes this object fast: every array a block
    assert isinstance(mapped["tiny"], np.memmap)
    value = {"a": np.arange(2000), "b": [np.ones((30, 40), order="F")], "c": np.arange(5)}
    plain["nested"] = value
    got = plain["nested"]
    assert got["b"][0].flags.f_contiguous and got["a"].flags.writeable
    assert all(same(got[k], value[k]) for k in ("a", "c")) and same(got["b"][0], value["b"][0])


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_writev = os.writev

    def stingy(fd, buffers):  # the kernel may write less than asked
        first = memoryview(buffers[0]).cast("B")
        return real_writev(fd, [first[: max(1, first.nbytes // 2)]])

    d = dir_archive(str(tmp_path / "short"), cached=False)
    monkeypatch.setattr(os, "writev", stingy)
    d["k"] = {"value": "x" * 5000, "array": np.arange(3000.0)}
    monkeypatch.undo()
    assert d["k"]["value"] == "x" * 5000 and same(d["k"]["array"], np.arange(3000.0))


def test_reads_without_preadv(tmp_path, monkeypatch):
    from klepto import _fs

    d = dir_archive(str(tmp_path / "nopreadv"), cached=False)
    d["a"] = np.arange(5000.0)
    monkeypatch.setattr(_fs, "_HAS_PREADV", False)
    assert same(d["a"], np.arange(5000.0)) and d["a"].flags.writeable


def test_classic_layout_is_reported(tmp_path, caplog):
    (tmp_path / "old" / "K_x").mkdir(parents=True)
    with caplog.at_level("WARNING", logger="klepto.archives.directory"):
        d = dir_archive(str(tmp_path / "old"), cached=False)
    assert "classic klepto dir_archive" in caplog.text and len(d) == 0


def test_file_systems_without_hard_links(tmp_path, monkeypatch):
    import errno

    def no_links(*args, **kwds):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    d = dir_archive(str(tmp_path / "nolinks"), cached=False)
    assert d.setdefault("a", 1) == 1 and d.setdefault("a", 2) == 1
    d["b"] = 2
    assert d.pop("b") == 2 and d.popitem() == ("a", 1)
    assert dir_archive(str(tmp_path / "nolinks"), cached=False).settings()["kind"] == "dir"


def test_add_is_one_winner_across_processes(tmp_path):
    import multiprocessing

    root = str(tmp_path / "add")
    d = dir_archive(root, cached=False)
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        won = pool.starmap(_add_in_worker, [(root, n) for n in range(8)])
    assert won.count(True) == 1 and d["k"] == won.index(True)
    assert d.add("k", "late") is False and d.add("other", 1) is True


def _add_in_worker(root: str, n: int) -> bool:
    return dir_archive(root, cached=False).add("k", n)


# --- the read path: one read for a small entry --------------------------------------------


def test_values_without_blocks_are_plain_entries_and_old_ones_still_read(tmp_path):
    """A pickle store writes a value with no array block as a "v" entry (unpickled once);
    "f" entries without blocks, as older writers made them, read as before."""
    from klepto.archives._direntry import HEADER, MAGIC

    d = dir_archive(str(tmp_path / "kinds"), cached=False)
    d["plain"], d["arrays"] = {"x": [1, 2]}, {"a": np.arange(2000)}
    fmt, digest = d._format, d._locate("old")[0]
    for name, kind in (("plain", "v"), ("arrays", "f")):
        with open(d._getdir(name), "rb") as handle:
            data = handle.read()
        _, key_length, value_length = HEADER.unpack_from(data)
        start = HEADER.size + key_length
        assert fmt.packer.unpack(data[start : start + value_length])[0] == kind
    key_envelope = fmt.packer.pack("old")
    value_envelope = fmt.packer.pack(("f", digest, pickle.dumps([3, 4]), []))
    header = HEADER.pack(MAGIC, len(key_envelope), len(value_envelope))
    with open(d._getdir("old"), "wb") as handle:
        handle.write(header + key_envelope + value_envelope)
    assert d["old"] == [3, 4] and d["plain"] == {"x": [1, 2]}
    assert same(d["arrays"]["a"], np.arange(2000)) and sorted(d) == ["arrays", "old", "plain"]


def test_entries_larger_than_the_first_read(tmp_path):
    from klepto.archives._direntry import FIRST_READ

    d = dir_archive(str(tmp_path / "large"), cached=False)
    key, value = "k" * (2 * FIRST_READ), "v" * (3 * FIRST_READ)
    d[key], d["small"] = value, 1
    assert d[key] == value and sorted(d) == sorted([key, "small"])
    assert d.__asdict__() == {key: value, "small": 1}
    with open(d._getdir(key), "r+b") as handle:
        handle.truncate(FIRST_READ + 100)
    with pytest.raises(CorruptArchiveError, match="truncated"):
        d[key]


def test_planted_non_files_at_a_keys_name_are_absent(tmp_path):
    d = dir_archive(str(tmp_path / "planted"), cached=False)
    os.mkdir(d._getdir("dir"))
    os.mkfifo(d._getdir("fifo"))  # must not hang a reader
    for key in ("dir", "fifo"):
        with pytest.raises(KeyError):
            d[key]
        assert d.get(key, "absent") == "absent"


def test_reads_entries_another_user_owns(tmp_path, monkeypatch):
    """O_NOATIME (reads do not write the inode) is refused for files one does not own:
    they are read without it, and this process stops asking."""
    from klepto.archives import _dirio

    noatime = getattr(os, "O_NOATIME", 0)
    if not noatime:
        pytest.skip("no O_NOATIME on this platform")
    d = dir_archive(str(tmp_path / "foreign"), cached=False)
    d["a"] = 1
    real_open, asked = os.open, []

    def not_the_owner(path, flags, *args, **kwds):
        asked.append(bool(flags & noatime))
        if flags & noatime:
            raise PermissionError(1, "Operation not permitted", path)
        return real_open(path, flags, *args, **kwds)

    monkeypatch.setattr(_dirio, "_read_flags", [_dirio._read_flags[0]])
    monkeypatch.setattr(os, "open", not_the_owner)
    assert d["a"] == 1 and d["a"] == 1
    assert asked == [True, False, False]
