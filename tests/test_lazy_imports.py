"""Backends load on first use: importing klepto does not import SQLAlchemy, Redis or h5py.

Each check runs in a fresh interpreter, because this test process has long since imported
every backend. The names themselves must behave as before: importable, the same object
every time, listed by ``dir``, picklable by reference.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap

import pytest

import klepto
from klepto import archives

REPO = pathlib.Path(__file__).resolve().parent.parent

#: Imported by a backend that a file/dir/memory user never touches.
OPTIONAL_BACKENDS = (
    "sqlalchemy",
    "redis",
    "h5py",
    "klepto.archives.sql",
    "klepto.archives._sqlbase",
    "klepto.archives.redis",
    "klepto.archives.hdf",
)

LAZY_FACTORIES = (
    "dir_archive",
    "file_archive",
    "hdf_archive",
    "hdfdir_archive",
    "redis_archive",
    "sql_archive",
    "sqltable_archive",
)


def run_child(code: str, cwd: pathlib.Path) -> dict:
    """Run ``code`` in a fresh interpreter; the JSON it printed last."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def loaded(names: tuple[str, ...]) -> str:
    """Child code that prints which of ``names`` are in ``sys.modules``."""
    return f"import json, sys; print(json.dumps([m for m in {names!r} if m in sys.modules]))"


def test_file_and_dir_archives_do_not_import_the_optional_backends(tmp_path):
    code = f"""
        import klepto
        import klepto.archives
        from klepto.archives import dir_archive, file_archive

        @klepto.lru_cache(cache=klepto.archives.file_archive("memo.pkl"))
        def square(x):
            return x * x

        square(3)
        square.dump()
        files = file_archive("f.pkl", cached=False)
        files["a"] = 1
        dirs = dir_archive("d", cached=False)
        dirs["b"] = 2
        assert isinstance(files, klepto.archives.file_archive)
        assert dict(files) == {{"a": 1}} and dict(dirs) == {{"b": 2}}
        {loaded(OPTIONAL_BACKENDS)}
    """
    assert run_child(code, tmp_path) == []


def test_import_klepto_loads_no_archive_backend(tmp_path):
    backends = (*OPTIONAL_BACKENDS, "klepto.archives.file", "klepto.archives.directory")
    code = f"""
        import klepto
        from klepto import lru_cache
        from klepto.archives import cache, dict_archive, null_archive
        {loaded(backends)}
    """
    assert run_child(code, tmp_path) == []


def test_naming_the_sql_archive_defers_sqlalchemy_until_one_is_built(tmp_path):
    code = """
        import json, sys
        from klepto.archives import sql_archive, sqltable_archive
        named = "sqlalchemy" in sys.modules
        table = sqltable_archive("sqlite:///t.db?table=memo", cached=False)
        table["k"] = 1
        print(json.dumps([named, "sqlalchemy" in sys.modules, table["k"]]))
    """
    assert run_child(code, tmp_path) == [False, True, 1]


def test_a_factory_pickled_here_unpickles_in_a_fresh_process(tmp_path):
    blob = pickle.dumps([archives.sql_archive, archives.file_archive, archives._dir_archive])
    code = f"""
        import json, pickle, sys
        import klepto.archives
        found = pickle.loads({blob!r})
        same = [found[0] is klepto.archives.sql_archive,
                found[1] is klepto.archives.file_archive,
                found[2] is klepto.archives._dir_archive]
        print(json.dumps(same))
    """
    assert run_child(code, tmp_path) == [True, True, True]


def test_concurrent_first_use_gives_one_factory(tmp_path):
    code = """
        import json, threading
        import klepto.archives

        seen = []
        start = threading.Barrier(8)

        def look():
            start.wait()
            seen.append(klepto.archives.sqltable_archive)

        threads = [threading.Thread(target=look) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps(len({id(factory) for factory in seen})))
    """
    assert run_child(code, tmp_path) == 1


@pytest.mark.parametrize("name", LAZY_FACTORIES)
def test_every_lazy_factory_is_one_stable_public_class(name):
    factory = getattr(archives, name)
    assert factory is getattr(archives, name)
    assert factory.__module__ == "klepto.archives" and factory.__name__ == name
    assert pickle.loads(pickle.dumps(factory)) is factory
    backend = getattr(archives, f"_{name}")
    assert factory.__backend__ is backend
    assert pickle.loads(pickle.dumps(backend)) is backend


def test_the_classic_names_and_listing_are_unchanged():
    namespace: dict = {}
    exec("from klepto.archives import *", namespace)
    assert {n for n in namespace if not n.startswith("__")} == set(archives.__all__)
    assert set(archives.__all__) | {"archive", "compact_archive", "migrate_classic"} <= set(
        dir(archives)
    )
    assert archives._sqlname("sqlite:///foo.db?table=bar") == ("sqlite:///foo.db", "bar")
    assert callable(archives.verify_archive) and callable(archives.copy_archive)
    assert archives.file.file_archive is archives._file_archive  # submodules are attributes


def test_submodules_stay_reachable_as_attributes():
    assert klepto.records.RecordFile is not None
    assert klepto.stores is not None and klepto.serializers is not None


@pytest.mark.parametrize("module", [klepto, archives])
def test_an_unknown_name_is_still_an_attribute_error(module):
    assert not hasattr(module, "no_such_thing")
    with pytest.raises(AttributeError, match="no_such_thing"):
        module.no_such_thing


def test_an_archive_left_open_at_exit_prints_nothing(tmp_path):
    # Loading the record engine late changes the order modules are torn down at exit: a
    # record file's finalizer must not run then (os may be gone; the system closes it).
    script = textwrap.dedent(
        f"""
        import dill, klepto
        from klepto.archives import file_archive
        kept = file_archive({str(tmp_path / "x.pkl")!r}, cached=False)
        kept["a"] = 1
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == ""
    reopened = archives.file_archive(str(tmp_path / "x.pkl"), cached=False)
    assert reopened["a"] == 1
