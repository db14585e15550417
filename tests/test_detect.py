"""klepto.stores: what a location holds is read from the store itself; one registry of kinds."""

from __future__ import annotations

import importlib.util
import os

import pytest

from klepto import stores
from klepto.archives import dict_archive, dir_archive, file_archive, sql_archive, sqltable_archive
from klepto.logs import BranchLog, Set
from klepto.records import RecordFile
from klepto.stores import Location, StoreKind, UnknownStoreError, detect, open_archive, open_store
from tests import _classic_writer as classic

HAVE_H5PY = importlib.util.find_spec("h5py") is not None


def test_location_parse():
    where = Location.parse("sqlite:///a.db?table=t#log=exp")
    assert (where.url, where.table, where.namespace, where.scheme) == (
        "sqlite:///a.db?table=t",
        "t",
        "exp",
        "sqlite",
    )
    assert Location.parse("postgresql+psycopg://h/db").scheme == "postgresql"
    plain = Location.parse("results")
    assert (plain.path, plain.url, plain.namespace) == ("results", None, None)


def test_detects_each_kind(in_tmpdir):
    dir_archive("d", cached=False)["a"] = 1
    file_archive("f.pkl", cached=False)["a"] = 1
    sqltable_archive("sqlite:///t.db?table=memo", cached=False)["a"] = 1
    sql_archive("sqlite:///s.db", cached=False)["a"] = 1
    with RecordFile("r.krf", "a") as records:
        records.append(b"x")
        records.commit()
    from klepto.logs.oplog import create_file_store

    create_file_store("o", suffix="", prefix="", truncate=True).close()
    BranchLog(dir_archive("log", cached=False)).create_branch()
    from klepto.logs.checkpoint import Transactional

    with Transactional("run") as run:
        run.checkpoint({"step": 0})
    expected = {
        "d": "dir",
        "f.pkl": "file",
        "sqlite:///t.db?table=memo": "sqltable",
        "sqlite:///t.db": "sqltable",
        "t.db": "sqltable",
        "sqlite:///s.db": "sql",
        "s.db": "sql",
        "r.krf": "records",
        "o.oplog": "oplog",
        "log": "tlog",
        "run": "checkpoint",
        "run#log=default": "checkpoint",
    }
    if HAVE_H5PY:
        from klepto.archives import hdf_archive, hdfdir_archive

        hdf_archive("h.h5", cached=False)["a"] = 1
        hdfdir_archive("hd", cached=False)["a"] = 1
        expected.update({"h.h5": "hdf", "hd": "hdfdir"})
    assert {location: detect(location) for location in expected} == expected
    for location, kind in expected.items():
        with open_store(location) as store:
            assert store.kind == kind
            assert store.info()["kind"] == kind


def test_names_do_not_decide_the_kind(in_tmpdir):
    dir_archive("looks_like_a.pkl", cached=False)
    file_archive("no_suffix_at_all", cached=False)
    assert detect("looks_like_a.pkl") == "dir"
    assert detect("no_suffix_at_all") == "file"


def test_missing_and_unknown(in_tmpdir):
    with pytest.raises(FileNotFoundError):
        detect("nowhere")
    with pytest.raises(FileNotFoundError):
        detect("sqlite:///missing.db")
    assert not os.path.exists("missing.db")  # detection never creates a database
    with open("notes.txt", "w") as handle:
        handle.write("hello")
    with pytest.raises(UnknownStoreError, match="not a klepto store"):
        detect("notes.txt")
    classic.write_file_archive("old.json", {"a": 1}, protocol="json")
    with pytest.raises(UnknownStoreError, match="klepto migrate"):
        detect("old.json")


def test_several_tables_need_a_name(in_tmpdir):
    sqltable_archive("sqlite:///t.db?table=one", cached=False)["a"] = 1
    sqltable_archive("sqlite:///t.db?table=two", cached=False)["b"] = 2
    with pytest.raises(UnknownStoreError, match=r"one, two.*\?table=NAME"):
        detect("t.db")
    with open_store("sqlite:///t.db?table=two") as store:
        assert list(store.keys()) == ["b"]


def test_branching_log_namespaces(in_tmpdir):
    archive = dir_archive("exp", cached=False)
    log = BranchLog(archive, "trials")
    log.push(log.create_branch(), Set("lr", 0.1))
    assert detect("exp") == "dir"  # no log in the default namespace
    assert detect("exp#log=trials") == "tlog"
    with open_store("exp#log=trials") as store:
        assert store.get("lr") == 0.1
        with pytest.raises(TypeError, match="read-only"):
            store.log.push(0, Set("lr", 1.0))
    with pytest.raises(UnknownStoreError, match="no log in namespace 'other'"):
        detect("exp#log=other")
    with open_store("exp#log=trials", kind="dir") as raw:
        assert raw.kind == "dir" and raw.info()["entries"] >= 3


def test_register_a_new_kind(in_tmpdir, monkeypatch):
    """Adding a backend is one entry: a detector, an opener, a creator."""
    monkeypatch.setattr(stores, "KINDS", list(stores._registered()))
    memory = {}

    def make(where):
        return memory.setdefault(where.url, dict_archive(where.url, cached=False))

    def open_memory(where, readonly):
        from klepto._store_adapters import ArchiveStore

        return ArchiveStore(where.text, "memory", make(where))

    stores.register_kind(
        StoreKind(
            "memory",
            "a test kind",
            lambda where: where.scheme == "memory",
            open_memory,
            make,
            schemes=("memory",),
        ),
        before="tlog",
    )
    assert stores.KINDS[0].name == "memory"
    target = open_archive("memory://scratch")
    target["k"] = "v"
    assert detect("memory://scratch") == "memory"
    with open_store("memory://scratch") as store:
        assert store.get("k") == "v"


def test_open_archive_for_new_and_existing(in_tmpdir):
    assert open_archive("new.pkl").kind == "file"
    assert open_archive("new_dir").kind == "dir"
    assert open_archive("sqlite:///n.db?table=t").kind == "sqltable"
    assert open_archive("sqlite:///m.db").kind == "sql"
    assert open_archive("x.db").kind == "sql"
    assert open_archive("other", kind="file").kind == "file"
    existing = dir_archive("kept.pkl", cached=False)
    existing["a"] = 1
    again = open_archive("kept.pkl")
    assert again.kind == "dir" and again["a"] == 1
    with RecordFile("r.krf", "a") as records:
        records.commit()
    with pytest.raises(UnknownStoreError, match="not an archive"):
        open_archive("r.krf")
    with pytest.raises(FileNotFoundError):
        open_archive("absent", create=False)


def test_module_examples(in_tmpdir):
    import doctest

    failures, _ = doctest.testmod(stores, optionflags=doctest.ELLIPSIS)
    assert failures == 0
