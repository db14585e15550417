"""The in-memory ``cache`` front: unsaved-entry tracking, close() and exit-time writes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from klepto.archives import cache, dict_archive
from klepto.archives._cached import _plain_cache


def test_front_without_backend_is_a_plain_dict_in_disguise():
    front = cache()
    assert type(front) is _plain_cache
    assert isinstance(front, cache) and isinstance(front, dict)
    front["a"] = 1
    assert front.unsaved == frozenset()  # nowhere to save it: nothing tracked


def test_writes_are_unsaved_until_dumped():
    backend = dict_archive("b", cached=False)
    front = cache(archive=backend)
    front["a"] = 1
    front.update({"b": 2}, c=3)
    front.setdefault("d", 4)
    assert front.unsaved == {"a", "b", "c", "d"}
    front.pop("d")
    assert front.unsaved == {"a", "b", "c"}
    front.dump("a")
    assert front.unsaved == {"b", "c"}
    front.dump()
    assert front.unsaved == frozenset()
    assert backend.__asdict__() == {"a": 1, "b": 2, "c": 3}


def test_loaded_entries_are_not_unsaved():
    backend = dict_archive("b", cached=False)
    backend.update(a=1, b=2)
    front = cache(archive=backend)
    front.load("a")
    front.load()
    assert front == {"a": 1, "b": 2}
    assert front.unsaved == frozenset()


def test_attaching_a_backend_marks_memory_unsaved():
    front = cache({"a": 1})
    backend = dict_archive("b", cached=False)
    front.archive = backend
    assert type(front) is cache
    assert front.unsaved == {"a"}
    front.archived(False)  # parked: nothing to save to
    assert type(front) is _plain_cache
    front.archived(True)
    assert front.unsaved == {"a"}


def test_close_writes_unsaved_entries():
    backend = dict_archive("b", cached=False)
    front = cache(archive=backend)
    front["a"] = 1
    front.close()
    assert backend.closed
    assert backend._data == {"a": 1}


def test_close_without_autodump_writes_nothing():
    backend = dict_archive("b", cached=False)
    front = cache(archive=backend)
    front.autodump = False
    front["a"] = 1
    front.close()
    assert backend._data == {}


def test_factory_autodump_flag():
    front = dict_archive("x", autodump=False)
    assert front.autodump is False
    assert dict_archive("y").autodump is True


def test_context_manager_flushes():
    backend = dict_archive("b", cached=False)
    with cache(archive=backend) as front:
        front["k"] = "v"
    assert backend._data == {"k": "v"}


# A persistent toy backend for the exit test: every write rewrites one JSON file, so the
# test depends on nothing but the archive base class.
EXIT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from klepto.archives._base import Archive
    from klepto.archives import cache
    import klepto

    class json_archive(Archive):
        def __init__(self, path):
            super().__init__(id=path)
            self.path = path
        def _load(self):
            if not os.path.exists(self.path):
                return {}
            with open(self.path) as f:
                return json.load(f)
        def _get(self, key):
            return self._load()[repr(key)]
        def _set(self, key, value):
            data = self._load(); data[repr(key)] = value
            with open(self.path, "w") as f:
                json.dump(data, f)
        def _keys(self):
            return iter(self._load())

    front = cache(archive=json_archive(sys.argv[1]))
    if sys.argv[2] == "off":
        front.autodump = False
    front["result"] = 42

    @klepto.lru_cache(cache=cache(archive=json_archive(sys.argv[1] + ".memo")))
    def square(x):
        return x * x
    square(7)
    # no dump(), no close(): the program just ends
    """
)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_interpreter_exit_writes_unsaved_entries(tmp_path, mode):
    path = tmp_path / "store.json"
    script = tmp_path / "run.py"
    script.write_text(EXIT_SCRIPT)
    subprocess.run([sys.executable, str(script), str(path), mode], check=True, timeout=60)
    if mode == "on":
        assert json.loads(path.read_text()) == {"'result'": 42}
    else:
        assert not path.exists()
    memo = json.loads((tmp_path / "store.json.memo").read_text()) if mode == "on" else None
    if memo is not None:
        assert memo == {"(7,)": 49}
