"""klepto.crypto: algorithms, hash, encodings, string, serializers, pickle (spec section 2)."""

import builtins
import hashlib
import importlib.util
import json
import pickle as stdlib_pickle

import dill
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klepto import crypto
from klepto.tools import _b

SAMPLE = [1, 2, 3, "4", "'5'", min]
SAMPLE_REPR = repr(SAMPLE)

simple_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children),
    max_leaves=10,
)


def test_function_attributes_point_at_their_lists():
    assert crypto.hash.algorithms is crypto.algorithms
    assert crypto.string.encodings is crypto.encodings
    assert crypto.pickle.serializers is crypto.serializers


def test_algorithms():
    names = crypto.algorithms()
    assert names[0] is None
    assert set(names[1:]) == set(hashlib.algorithms_available)
    assert {"md5", "sha1", "sha256"} <= set(names)


def test_hash_default_is_builtin_hash():
    assert crypto.hash(1) == builtins.hash(1)
    assert crypto.hash((1, 2, "a")) == builtins.hash((1, 2, "a"))
    with pytest.raises(TypeError):
        crypto.hash([1, 2])


def test_hash_with_algorithm_is_hexdigest_of_repr():
    assert crypto.hash(1, "md5") == "c4ca4238a0b923820dcc509a6f75849b"
    assert crypto.hash(SAMPLE, "sha1") == "3bdd73e79be4277dcb874d193b8dd08a46bc6885"
    assert crypto.hash([1, 2], algorithm="md5") == hashlib.md5(b"[1, 2]").hexdigest()


def test_hash_variable_length_algorithm_gives_a_digest():
    digest = crypto.hash("x", "shake_128")
    assert digest == hashlib.shake_128(b"'x'").hexdigest(32)


def test_hash_rejects_other_keywords():
    with pytest.raises(TypeError):
        crypto.hash(1, algorithm="md5", strict=True)
    with pytest.raises(ValueError):
        crypto.hash(1, "no-such-algorithm")


def test_encodings():
    names = crypto.encodings()
    assert names[0] is None
    assert names[-2:] == ("str", "repr")
    assert {"utf_8", "ascii", "latin_1"} <= set(names)
    assert "tactis" not in names
    assert not [name for name in names[1:] if name.endswith("_codec")]
    assert "unicode" not in names and "bytes" not in names


def test_string_must_examples():
    assert crypto.string("1") == "1"
    assert crypto.string("1", encoding="repr") == "'1'"
    assert crypto.string(SAMPLE) == str(SAMPLE)
    assert crypto.string(SAMPLE, "repr") == SAMPLE_REPR
    assert crypto.string(SAMPLE, "utf_8") == SAMPLE_REPR.encode()
    assert crypto.string(SAMPLE, encoding="utf_8") == _b(SAMPLE_REPR)
    assert crypto.string(SAMPLE, "str") == str(SAMPLE)


def test_string_bytes_only_when_not_strict():
    assert crypto.string("x", "bytes", strict=False) == b"x"
    with pytest.raises(LookupError):
        crypto.string("x", "bytes")


def test_string_error_modes_of_the_codec_fallback():
    assert crypto.string("\xe9", "ascii", strict=None) == b"''"
    assert crypto.string("\xe9", "ascii", strict=False) == b"'?'"
    with pytest.raises(UnicodeEncodeError):
        crypto.string("\xe9", "ascii")


def test_string_unknown_encoding_raises_lookup_error():
    with pytest.raises(LookupError):
        crypto.string(1, "no_such_codec")
    with pytest.raises(LookupError):
        crypto.string(1, "no_such_codec", strict=False)


def test_string_never_evaluates_the_encoding_name():
    # Classic klepto eval-ed "<encoding>(object)"; an arbitrary name must not run code.
    with pytest.raises(LookupError):
        crypto.string(1, "__import__('os').getcwd", strict=False)
    with pytest.raises(LookupError):
        crypto.string(1, "len", strict=False)


@settings(deadline=None, derandomize=True)
@given(simple_values)
def test_string_matches_builtins(value):
    assert crypto.string(value) == str(value)
    assert crypto.string(value, "repr") == repr(value)
    assert crypto.string(value, "utf_8") == repr(value).encode("utf_8")


def test_serializers():
    names = crypto.serializers()
    assert names[:4] == (None, "pickle", "json", "dill")
    optional = [n for n in ("cloudpickle", "jsonpickle") if importlib.util.find_spec(n)]
    assert list(names[4:]) == optional


def test_pickle_must_examples():
    assert crypto.pickle(SAMPLE) == crypto.string(SAMPLE, "repr")
    assert crypto.pickle(1, serializer="dill") == dill.dumps(1)
    assert crypto.pickle(1, serializer=dill) == dill.dumps(1)


def test_pickle_drops_keywords_the_serializer_rejects():
    assert crypto.pickle((1, 2), "pickle", byref=True) == stdlib_pickle.dumps((1, 2))
    assert crypto.pickle([1, 2], "json", byref=True) == "[1, 2]"
    assert crypto.pickle([1, 2], json, sort_keys=True) == "[1, 2]"
    assert crypto.pickle((1, 2), "dill", byref=True) == dill.dumps((1, 2), byref=True)


def test_pickle_bad_serializer():
    with pytest.raises(NameError, match="name 'no_such_module_xyz' is not defined"):
        crypto.pickle(1, "no_such_module_xyz")
    with pytest.raises(TypeError, match="is not a module"):
        crypto.pickle(1, 42)


@settings(deadline=None, derandomize=True)
@given(simple_values)
def test_pickle_round_trips(value):
    assert stdlib_pickle.loads(crypto.pickle(value, "pickle")) == value
    assert dill.loads(crypto.pickle(value, "dill", byref=True)) == value
