"""pandas interop (extra ``pandas``): ``cache.to_frame()``, ``archives._to_frame`` and
``<factory>.from_frame`` round trips for every archive kind (spec 7.11)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from klepto import archives
from klepto.errors import MissingDependencyError

pd = pytest.importorskip("pandas", reason="pandas not installed (pip install 'klepto[pandas]')")

HAVE_H5PY = importlib.util.find_spec("h5py") is not None


def _makers(tmp_path):
    makers = {
        "dict": lambda: archives.dict_archive("test"),
        "null": archives.null_archive,
        "dir": lambda: archives.dir_archive(str(tmp_path / "memo")),
        "file": lambda: archives.file_archive(str(tmp_path / "memo.pkl")),
        "sql": lambda: archives.sql_archive(f"sqlite:///{tmp_path}/sql.db"),
        "sqltable": lambda: archives.sqltable_archive(f"sqlite:///{tmp_path}/t.db?table=memo"),
    }
    if HAVE_H5PY:
        makers["hdf"] = lambda: archives.hdf_archive(str(tmp_path / "memo.h5"))
        makers["hdfdir"] = lambda: archives.hdfdir_archive(str(tmp_path / "hdfdir"))
    return makers


KINDS = ["dict", "null", "dir", "file", "sql", "sqltable", "hdf", "hdfdir"]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(tmp_path, kind):
    makers = _makers(tmp_path)
    if kind not in makers:
        pytest.skip("h5py not installed")
    front = makers[kind]()
    front.update({"a": 1, "b": 2, "c": 3})
    front.dump()
    frame = front.to_frame()
    assert frame.columns.name == f"{kind}_archive"
    assert list(frame.columns)[1] == "__archive__"
    again = archives.dict_archive.from_frame(frame)
    assert again == front
    assert again.archive == front.archive
    assert again.archive.state == front.archive.state
    assert again.__type__ is front.__type__


def test_memory_and_backend_columns_are_outer_joined():
    front = archives.dict_archive("test", {"a": 1})
    front.archive.update({"b": 2})
    frame = front.to_frame()
    assert frame.loc["a", "test"] == 1 and pd.isna(frame.loc["a", "__archive__"])
    assert frame.loc["b", "__archive__"] == 2 and pd.isna(frame.loc["b", "test"])
    again = archives.dict_archive.from_frame(frame)
    assert dict(again) == {"a": 1} and again.archive.__asdict__() == {"b": 2}


def test_raw_archive_and_tuple_keys(tmp_path):
    raw = archives.dir_archive(str(tmp_path / "raw"), cached=False)
    raw.update({(1, 2): "pair", 3: [4]})
    frame = archives._to_frame(raw)
    assert list(frame.columns) == ["raw"]
    assert set(frame.index) == {(1, 2), 3}  # tuple keys stay single keys
    again = archives._from_frame(frame)
    assert isinstance(again, archives.dir_archive) and again.__asdict__() == raw.__asdict__()


def test_state_is_never_evaluated():
    frame = archives.dict_archive("x", {"a": 1}).to_frame()
    frame.index.name = "__import__('os').system('exit 1')"
    again = archives._from_frame(frame)  # not a literal: ignored, never run
    assert dict(again) == {"a": 1}


def test_missing_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"klepto\[pandas\]"):
        archives.dict_archive("x", {"a": 1}).to_frame()
