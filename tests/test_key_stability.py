"""The default keymap's keys are the same in every process (issue 2, "Better than classic").

Fresh interpreters with different ``PYTHONHASHSEED`` values compute the key of the same calls;
``klepto._canonical.stable_bytes`` of each key, and the key's repr where the repr does not
depend on set iteration order, must agree byte for byte. Within one process, calls that bind
to the same arguments share a key, and equal numbers (``3``, ``3.0``) share one too.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import klepto
from klepto._canonical import LIST, freeze, stable_bytes, stable_hash

ROOT = Path(klepto.__file__).resolve().parent.parent
SEEDS = ("0", "1", "4294967295")

SCRIPT = textwrap.dedent(
    """
    import dataclasses
    import enum
    import json
    import sys

    import numpy as np

    import klepto
    from klepto._canonical import stable_bytes


    @dataclasses.dataclass
    class Point:
        x: float
        tags: list


    class Color(enum.Enum):
        RED = 1
        GREEN = 2


    @klepto.lru_cache()
    def f(x, y=0, *args, **kwds):
        return x


    CASES = {
        "str": (("hello, world",), {}),
        "unicode": (("\\u00e9t\\u00e9 \\U0001f600",), {}),
        "int": ((12345678901234567890,), {}),
        "negative": ((-7, -0.5), {}),
        "float": ((2.5,), {}),
        "integral-float": ((3.0,), {}),
        "none-bool": ((None, True), {}),
        "bytes": ((b"raw bytes",), {}),
        "tuple": (((1, "a", (2.5, None)),), {}),
        "list": (([1, "a", [2, "b"]],), {}),
        "dict": (({"b": 1, "a": [2, 3], "c": {"d": "e"}},), {}),
        "set": (({"x", "y", "z", "w"},), {}),
        "frozenset": ((frozenset({"p", "q", ("r", 1)}),), {}),
        "nested": (({"k": [{"s": {"m", "n"}}, ("t", frozenset({"u", "v"}))]},), {}),
        "numpy": ((np.arange(6, dtype=np.int64).reshape(2, 3),), {}),
        "numpy-text": ((np.array(["a", "bc"]),), {}),
        "numpy-big": ((np.arange(2000, dtype=np.float64),), {}),
        "numpy-scalar": ((np.float64(1.5), np.int32(4)), {}),
        "dataclass": ((Point(1.0, ["a", "b"]),), {}),
        "enum": ((Color.GREEN,), {}),
        "varargs": ((1, 2, "three", 4.0), {}),
        "kwargs": ((1,), {"zeta": "z", "alpha": {"a", "b"}, "y": 2}),
        "keyword-spelling": ((), {"y": 5, "x": "x"}),
    }
    # Keys whose repr prints a set, whose order follows the (salted) str hash.
    UNORDERED = {"dict", "set", "frozenset", "nested", "kwargs"}

    out = {}
    for name, (args, kwds) in CASES.items():
        key = f.key(*args, **kwds)
        out[name] = {
            "bytes": stable_bytes(key).hex(),
            "repr": None if name in UNORDERED else repr(key),
        }
    json.dump(out, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def keys_by_seed(tmp_path_factory):
    """Run the script in fresh interpreters, one per hash seed, in parallel."""
    script = tmp_path_factory.mktemp("stability") / "keys.py"
    script.write_text(SCRIPT)
    processes = {
        seed: subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=script.parent,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        for seed in SEEDS
    }
    results = {}
    for seed, process in processes.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        results[seed] = json.loads(stdout)
    return results


def test_every_case_ran(keys_by_seed):
    for result in keys_by_seed.values():
        assert len(result) == 23


@pytest.mark.parametrize(
    "case",
    [
        "str",
        "unicode",
        "int",
        "negative",
        "float",
        "integral-float",
        "none-bool",
        "bytes",
        "tuple",
        "list",
        "dict",
        "set",
        "frozenset",
        "nested",
        "numpy",
        "numpy-text",
        "numpy-big",
        "numpy-scalar",
        "dataclass",
        "enum",
        "varargs",
        "kwargs",
        "keyword-spelling",
    ],
)
def test_same_key_under_every_hash_seed(keys_by_seed, case):
    seen = {seed: result[case] for seed, result in keys_by_seed.items()}
    first = seen[SEEDS[0]]
    for seed, entry in seen.items():
        assert entry["bytes"] == first["bytes"], f"stable_bytes differ under seed {seed}"
        assert entry["repr"] == first["repr"], f"key repr differs under seed {seed}"


def test_distinct_cases_have_distinct_bytes(keys_by_seed):
    encoded = [entry["bytes"] for entry in keys_by_seed[SEEDS[0]].values()]
    assert len(set(encoded)) == len(encoded)


def test_integral_float_and_int_encode_alike(keys_by_seed):
    result = keys_by_seed[SEEDS[0]]
    assert result["integral-float"]["bytes"] == stable_bytes((3, 0)).hex()


def test_this_process_agrees_for_builtin_values(keys_by_seed):
    """Values without a class of the script's own encode here exactly as there."""

    @klepto.lru_cache()
    def f(x, y=0, *args, **kwds):
        return x

    calls = {
        "str": (("hello, world",), {}),
        "list": (([1, "a", [2, "b"]],), {}),
        "set": (({"x", "y", "z", "w"},), {}),
        "dict": (({"b": 1, "a": [2, 3], "c": {"d": "e"}},), {}),
        "numpy": ((np.arange(6, dtype=np.int64).reshape(2, 3),), {}),
        "kwargs": ((1,), {"zeta": "z", "alpha": {"a", "b"}, "y": 2}),
    }
    expected = keys_by_seed[SEEDS[0]]
    for name, (args, kwds) in calls.items():
        assert stable_bytes(f.key(*args, **kwds)).hex() == expected[name]["bytes"], name


# --- within one process ---------------------------------------------------------------------


@klepto.lru_cache()
def g(x, y=2, *, z=3):
    return x + y + z


def test_int_and_float_share_a_key():
    assert g.key(3) == g.key(3.0)
    assert stable_bytes(g.key(3)) == stable_bytes(g.key(3.0))
    assert stable_hash(g.key(3)) == stable_hash(g.key(3.0))
    assert g(3) == 8
    assert g(3.0) == 8
    assert g.info().hit == 1


def test_spellings_of_one_call_share_a_key():
    keys = {g.key(1, 2), g.key(1, y=2), g.key(x=1, y=2), g.key(y=2, x=1), g.key(1, 2, z=3)}
    assert len(keys) == 1


def test_defaults_are_filled_in():
    assert g.key(1) == g.key(1, 2) == g.key(1, 2, z=3) == (1, 2, 3)
    assert g.key(1) != g.key(1, 5)
    assert g.key(1) != g.key(1, z=4)


def test_keys_of_hashable_calls_are_plain_tuples():
    key = g.key("a", 1.5)
    assert type(key) is tuple
    assert key == ("a", 1.5, 3)


def test_freezing_keeps_hashable_values_as_they_are():
    """The memoizer tells an unhashable key from a hashable one by identity after freezing."""
    for value in [(1, "a", (2.5, None)), frozenset({1, ("x",)}), "text", 3.0, (), Point3(1, 2)]:
        assert freeze(value) is value
    assert freeze((1, [2])) == (1, (LIST, 2))
    assert freeze(frozenset({(1, 2)})) == frozenset({(1, 2)})


@dataclasses.dataclass(frozen=True)
class Point3:
    x: int
    y: int


@pytest.mark.parametrize(
    "key",
    [(), (1, 2), (0, -5, 10**40), ("", "e\u0301", "\ud800"), (1, "x"), (True, 1), ((1,), 2.0)],
)
def test_flat_tuple_fast_path_is_the_general_encoding(key):
    """stable_bytes' fast path for tuples of ints and strs (memoized calls' keys) changes
    no byte; tuples holding anything else take the general way."""
    from klepto import _canonical

    general = bytearray()
    _canonical._encode_sequence(b"(", key, general)
    assert stable_bytes(key) == bytes(general)
