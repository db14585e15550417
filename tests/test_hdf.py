"""hdf_archive and hdfdir_archive (extra ``hdf``): classic names and flags, the fixed
quirks, native values readable by any HDF5 tool, checksums, and the missing-extra error."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from klepto.errors import CorruptArchiveError, MissingDependencyError

h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install 'klepto[hdf]')")

from klepto import lru_cache, safe  # noqa: E402
from klepto.archives import dir_archive, hdf_archive, hdfdir_archive  # noqa: E402


def test_default_names_and_suffix(in_tmpdir):
    assert hdf_archive(cached=False).name == "memo.hdf5"
    assert os.path.exists("memo.hdf5")  # created on construction, as classic
    assert hdf_archive("results", cached=False).name == "results.hdf5"
    assert hdf_archive("results.h5", cached=False).name == "results.h5"
    assert hdfdir_archive(cached=False).name == "memo"
    assert os.path.isdir("memo")


@pytest.mark.parametrize("meta", [False, True])
def test_keys_and_iteration_work(in_tmpdir, meta):
    archive = hdf_archive("r.h5", cached=False, meta=meta)
    archive.update({"x": 1, (1, 2): [3], 3: len})
    # classic: keys()/iter() recursed forever (issue #69) and meta=True read back {}
    assert sorted(archive, key=repr) == sorted(["x", (1, 2), 3], key=repr)
    assert archive.__asdict__() == {"x": 1, (1, 2): [3], 3: len}
    assert len(archive) == 3


def test_settings_recorded_and_enforced(in_tmpdir):
    hdf_archive("r.h5", cached=False, serialized=False, meta=True)
    again = hdf_archive("r.h5", cached=False)
    assert again.settings()["serialized"] is False and again.state["meta"] is True
    with pytest.raises(ValueError, match="created with meta=True"):
        hdf_archive("r.h5", cached=False, meta=False)


def test_native_values_are_plain_hdf5(in_tmpdir):
    archive = hdf_archive("native.h5", cached=False, serialized=False)
    archive["grid"] = np.arange(12.0).reshape(3, 4)
    archive["label"] = "run 1"
    archive["n"] = 7
    assert archive["label"] == "run 1" and archive["n"] == 7
    np.testing.assert_array_equal(archive["grid"], np.arange(12.0).reshape(3, 4))
    digest = archive._codec.digest("grid")
    with h5py.File("native.h5", "r") as handle:  # any HDF5 tool sees a float array
        np.testing.assert_array_equal(handle[digest][()], np.arange(12.0).reshape(3, 4))
    with pytest.raises(TypeError, match="serialized=True"):
        archive["objects"] = [len]


def test_damage_is_reported(in_tmpdir):
    archive = hdf_archive("r.h5", cached=False, serialized=False)
    archive["grid"] = np.arange(4)
    with h5py.File("r.h5", "a") as handle:
        handle[archive._codec.digest("grid")][0] = 99
    with pytest.raises(CorruptArchiveError, match="checksum"):
        archive["grid"]
    pickled = hdf_archive("p.h5", cached=False)
    pickled["v"] = "value"
    digest = pickled._codec.digest("v")
    with h5py.File("p.h5", "a") as handle:
        raw = bytearray(handle[digest][()].tobytes())
        raw[-1] ^= 1
        del handle[digest]
        handle.create_dataset(digest, data=np.void(bytes(raw))).attrs["key"] = np.void(
            pickled._codec.keys.pack_key("v")
        )
    with pytest.raises(CorruptArchiveError, match="checksum"):
        pickled["v"]


def test_compact_and_clear_reclaim_space(in_tmpdir):
    archive = hdf_archive("r.h5", cached=False)
    archive.update({i: "x" * 10000 for i in range(20)})
    for i in range(19):
        del archive[i]
    before = os.path.getsize("r.h5")
    archive.compact()
    assert os.path.getsize("r.h5") < before and archive[19] == "x" * 10000
    archive.clear()
    assert len(archive) == 0 and archive.settings()["kind"] == "hdf"


def test_hdfdir_entries_are_files(in_tmpdir):
    archive = hdfdir_archive("d", cached=False)
    archive.update({"a": 1, (2, 3): "b"})
    names = sorted(os.listdir("d"))
    assert names[0] == ".klepto" and all(
        n.startswith("K_") and n.endswith(".hdf5") for n in names[1:]
    )
    assert hdfdir_archive("d", cached=False).__asdict__() == {"a": 1, (2, 3): "b"}
    dir_archive("plain", cached=False)
    with pytest.raises(ValueError, match="not a hdfdir_archive"):
        hdfdir_archive("plain", cached=False)


@pytest.mark.parametrize("factory", [hdf_archive, hdfdir_archive])
@pytest.mark.parametrize("meta", [False, True])
def test_safe_cache_over_hdf(in_tmpdir, factory, meta):
    """The classic test_hdf scenario: hits + misses + loads add up to the calls."""

    @safe.lru_cache(cache=factory("cache", meta=meta, cached=False))
    def f(x):
        return x * 2

    for i in range(100):
        f(i % 10)
    info = f.info()
    assert info.hit + info.miss + info.load == 100


def test_missing_h5py_names_the_extra(in_tmpdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"klepto\[hdf\]"):
        hdf_archive("r.h5", cached=False)
    with pytest.raises(ImportError):
        hdfdir_archive("d", cached=False)


def test_lru_cache_dumps_to_hdf(in_tmpdir):
    @lru_cache(cache=hdf_archive("results.h5"))
    def square(x):
        return x * x

    [square(i) for i in range(5)]
    square.dump()
    assert hdf_archive("results.h5", cached=False).__asdict__() == {(i,): i * i for i in range(5)}
