"""dir_archive against hostile input: malicious keys (E1), forged entries (E4), symlink
attacks (E5) and foreign files (E6)."""

from __future__ import annotations

import hashlib
import os

import pytest

from klepto.archives import dir_archive
from klepto.errors import CorruptArchiveError, SignatureError
from klepto.integrity import KEY_ENV


def test_forged_entry_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    marker = tmp_path / "PWNED"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    signed = dir_archive(str(tmp_path / "victim"), key="k", cached=False)
    signed["a"] = 1
    forger = dir_archive(str(tmp_path / "forger"), cached=False)
    forger["a"] = Exploit()
    os.replace(forger._getdir("a"), signed._getdir("a"))
    with pytest.raises(SignatureError):
        signed["a"]
    with pytest.raises(SignatureError):
        list(signed)
    assert not marker.exists()


HOSTILE_KEYS = [
    "../x",
    "a/../../x",
    "x",
    "x/../../../victim",
    "x/../../../../../escape",
    "/etc/passwd",
    "/tmp/absolute",
    ".",
    "..",
    "",
    "\x00",
    "a\x00b",
    "\n",
    "z" * 300,
    "y" * 10_000,
    "CON",
    "aux",
    "A",
    "a",
    "\u00e9",
    "e\u0301",
    "-dash-",
    "_dash_",
    12345,
    "12345",
    b"../b",
    ("..", "/"),
    "K_" + "0" * 32,
    ".klepto",
    ".klepto-tmp-x.tmp",
]


def snapshot(directory, skip):
    """Every path under ``directory`` (except ``skip``) with its content digest."""
    found = {}
    for folder, dirs, files in os.walk(directory):
        dirs[:] = [name for name in dirs if os.path.join(folder, name) != skip]
        for name in dirs:
            found[os.path.join(folder, name)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[path] = hashlib.sha256(handle.read()).hexdigest()
    return found


def test_hostile_keys_stay_inside_and_distinct(tmp_path):
    parent = tmp_path / "parent"
    (parent / "victim").mkdir(parents=True)
    (parent / "victim" / "data.txt").write_text("precious")
    root = str(parent / "store")
    d = dir_archive(root, cached=False)
    before = snapshot(str(tmp_path), root)
    for i, key in enumerate(HOSTILE_KEYS):
        d[key] = i
    for i, key in enumerate(HOSTILE_KEYS):
        assert d[key] == i, key
        assert key in d
    assert len(d) == len(HOSTILE_KEYS)
    assert sorted(map(repr, d)) == sorted(map(repr, HOSTILE_KEYS))
    for key in HOSTILE_KEYS:
        del d[key]
    assert snapshot(str(tmp_path), root) == before
    assert sorted(os.listdir(root)) == [".klepto"]


def test_temp_name_symlinks_are_never_followed(tmp_path, monkeypatch):
    import itertools
    import tempfile

    target = tmp_path / "target"
    target.write_bytes(b"do not touch")
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    d = dir_archive(str(tmp_path / "e5"), cached=False)
    planted = os.path.join(d.state["id"], ".klepto-tmp-PLANTED.tmp")
    os.symlink(target, planted)
    names = tempfile._get_candidate_names()
    monkeypatch.setattr(
        tempfile, "_get_candidate_names", lambda: itertools.chain(["PLANTED"], names)
    )
    d["k"] = "value"
    assert d["k"] == "value" and list(d) == ["k"]
    entry = d._getdir("victim")
    os.symlink(target, entry)  # a symlink where an entry will go
    assert "victim" not in d and list(d) == ["k"]
    with pytest.raises(KeyError):
        d["victim"]
    d["victim"] = 1  # os.replace swaps the link itself
    assert d["victim"] == 1 and not os.path.islink(entry)
    d.remove_stale_temps(max_age=0)
    assert not os.path.lexists(planted)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest


def test_planted_settings_symlink_is_refused(tmp_path):
    target = tmp_path / "target"
    target.write_text("{}")
    root = tmp_path / "e5s"
    root.mkdir()
    os.symlink(target, root / ".klepto")
    with pytest.raises(CorruptArchiveError, match="symlink"):
        dir_archive(str(root), cached=False)
    assert target.read_text() == "{}"


def test_foreign_files_are_not_keys(tmp_path):
    d = dir_archive(str(tmp_path / "e6"), cached=False)
    d["real"] = 1
    root = tmp_path / "e6"
    (root / "K_foo").mkdir()
    (root / "output.pkl").write_bytes(b"")
    (root / "random.bin").write_bytes(os.urandom(100))
    (root / ("K_" + "a" * 32)).mkdir()  # a directory where an entry file would be
    os.mkfifo(root / ("K_" + "b" * 32))  # must not hang a reader
    os.symlink(root / "random.bin", root / ("K_" + "c" * 32))
    with open(d._getdir("real"), "rb") as handle:  # a copy of an entry as a temp file
        (root / ".klepto-tmp-inflight.tmp").write_bytes(handle.read())
    assert list(d) == ["real"] and len(d) == 1 and d.__asdict__() == {"real": 1}
    garbage = root / ("K_" + "d" * 32)
    garbage.write_bytes(b"")  # a regular file named like an entry: a clear error
    with pytest.raises(CorruptArchiveError, match=garbage.name):
        list(d)


def test_entry_moved_under_another_name_is_detected(tmp_path):
    d = dir_archive(str(tmp_path / "mv"), cached=False)
    d["a"], d["b"] = 1, 2
    os.replace(d._getdir("a"), d._getdir("b"))
    with pytest.raises(CorruptArchiveError):
        d["b"]
    with pytest.raises(CorruptArchiveError):
        list(d)


def test_pop_of_a_planted_symlink_leaves_it_alone(tmp_path):
    target = tmp_path / "target"
    target.write_text("precious")
    d = dir_archive(str(tmp_path / "popsym"), cached=False)
    os.symlink(target, d._getdir("k"))
    assert d.pop("k", "absent") == "absent"
    assert os.path.islink(d._getdir("k")) and target.read_text() == "precious"
    assert os.stat(target).st_nlink == 1  # never hard-linked into the archive
