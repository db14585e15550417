"""Invalidation on code change: ``version=`` and ``version='code'`` in the key namespace."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import pytest

import klepto
from klepto import safe
from klepto._versioning import VERSION, code_digest
from klepto.archives import dict_archive


def test_off_by_default():
    @klepto.lru_cache()
    def f(x):
        return x

    assert f.key(1) == (1,) and f.__memo__.version is None


def test_a_version_value_heads_every_key():
    @klepto.lru_cache(version=3)
    def f(x, y=2):
        return x + y

    assert f.key(1) == (VERSION, 3, 1, 2)
    assert f(1) == f(1, 2) == f(x=1) == 3
    assert f.info().hit == 2
    assert list(f.__cache__()) == [(VERSION, 3, 1, 2)]


def test_another_version_does_not_see_stored_results():
    store = dict_archive("versions", cached=False)
    calls = []

    def build(version):
        @klepto.lru_cache(cache=store, version=version)
        def model(x):
            calls.append(version)
            return (version, x)

        return model

    assert build("v1")(1) == ("v1", 1)
    assert build("v1")(1) == ("v1", 1)  # a new "process" of the same version: served
    assert build("v2")(1) == ("v2", 1)  # changed: computed again, never the stale result
    assert calls == ["v1", "v2"]
    assert len(store) == 2


def test_unhashable_arguments_and_other_keymaps():
    @klepto.lru_cache(version="a")
    def total(values):
        return sum(values)

    assert total([1, 2]) == total([1, 2]) == 3
    assert total.info().hit == 1

    @klepto.lru_cache(version="a", keymap=klepto.keymaps.hashmap())
    def g(x):
        return x

    assert g.key(1)[:2] == (VERSION, "a") and g(1) == 1


def test_safe_variants_still_refuse_unfaithful_text_keys():
    @safe.lru_cache(version=1)
    def describe(obj):
        return "ok"

    describe(lambda: 0)
    describe(lambda: 0)
    assert describe.info().miss == 2 and describe.info().size == 0
    assert describe(3) == describe(3) == "ok" and describe.info().hit == 1


def test_version_needs_a_stable_encoding():
    with pytest.raises(TypeError, match="stable encoding"):
        klepto.lru_cache(version=object())(lambda x: x)


# --- version='code' ------------------------------------------------------------------------
def _define(source: str):
    namespace: dict = {}
    exec(textwrap.dedent(source), namespace)
    return namespace["f"]


BASE = """
def f(x, scale=2):
    '''Scale x.'''
    return [x * scale for _ in range(1)]
"""


def test_code_version_changes_with_the_code():
    base = code_digest(_define(BASE))
    assert code_digest(_define(BASE)) == base
    assert code_digest(_define(BASE.replace("x * scale", "x + scale"))) != base  # bytecode
    assert code_digest(_define(BASE.replace("scale=2", "scale=3"))) != base  # defaults
    assert code_digest(_define(BASE.replace("range(1)", "range(2)"))) != base  # constants
    assert code_digest(_define(BASE.replace("_ in", "i in"))) != base  # nested code's names


def test_code_version_ignores_docstrings_and_location():
    base = code_digest(_define(BASE))
    assert code_digest(_define(BASE.replace("Scale x.", "Multiply x."))) == base
    assert code_digest(_define("\n\n\n" + BASE)) == base


def test_code_version_is_the_same_in_every_process(tmp_path):
    module = tmp_path / "versioned_module.py"
    module.write_text(
        textwrap.dedent(
            """
            def f(x, names=frozenset({"a", "b", "c"})):
                return sorted(names) + [x]
            """
        )
    )
    script = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r});"
        "import versioned_module, klepto._versioning as v;"
        "print(v.code_digest(versioned_module.f))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1  # hash randomisation does not reach the digest


def test_code_version_in_keys_and_through_wrappers():
    def plain(x):
        return x

    @functools.wraps(plain)
    def wrapped(x):
        return plain(x)

    memo = klepto.lru_cache(version="code")(wrapped)
    assert memo.key(1) == (VERSION, "code:" + code_digest(plain), 1)

    class Model:
        @klepto.lru_cache(version="code")
        def method(self, x):
            return x

        @klepto.lru_cache(version="code")
        @classmethod
        def built(cls, x):
            return x

    assert Model().method(2) == 2 and Model.built(3) == 3


def test_code_version_needs_python_code():
    with pytest.raises(TypeError, match="Python function"):
        klepto.lru_cache(version="code")(len)
