"""klepto.keymaps: keymap, hashmap, stringmap, picklemap, sentinels, chaining (spec §3)."""

import copy
import hashlib
import json
import pickle
import sys

import dill
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klepto import crypto, keymaps
from klepto._inspect import NULL, _keygen
from klepto.keymaps import (
    NOSENTINEL,
    SENTINEL,
    _stub_decoder,
    hashmap,
    keymap,
    picklemap,
    stringmap,
)
from klepto.rounding import deep_round_factory, simple_round_factory
from klepto.tools import _b

ARGS = (1, 2)
KWDS = {"a": 3, "b": 4}
SAMPLE = [1, 2, 3, "4", "'5'", min]
SAMPLE_TEXT = "([1, 2, 3, '4', \"'5'\", <built-in function min>],)"
ALL_KINDS = (keymap, hashmap, stringmap, picklemap)


def test_public_names():
    assert set(keymaps.__all__) == {
        "keymap",
        "hashmap",
        "stringmap",
        "picklemap",
        "SENTINEL",
        "NOSENTINEL",
    }
    for kind in (hashmap, stringmap, picklemap):
        assert issubclass(kind, keymap)


# --- sentinels ---------------------------------------------------------------------------


def test_sentinels():
    assert repr(SENTINEL) == "<SENTINEL>"
    assert repr(NOSENTINEL) == "<NOSENTINEL>"
    assert type(SENTINEL) is not type(NOSENTINEL)
    assert SENTINEL != NOSENTINEL
    for marker in (SENTINEL, NOSENTINEL):
        assert pickle.loads(pickle.dumps(marker)) is marker
        assert dill.loads(dill.dumps(marker)) is marker
        assert copy.copy(marker) is marker
        assert copy.deepcopy(marker) is marker


def test_sentinel_property():
    mapper = keymap()
    assert mapper.sentinel is NOSENTINEL
    mapper.sentinel = SENTINEL
    assert mapper.sentinel is SENTINEL
    mapper.sentinel = "|"
    assert mapper.sentinel == "|"
    assert mapper(1, a=2) == (1, "|", "a", 2)
    mapper.sentinel = NOSENTINEL
    assert mapper.sentinel is NOSENTINEL
    assert mapper(1, a=2) == (1, "a", 2)


# --- keymap ------------------------------------------------------------------------------


def test_keymap_must_examples():
    assert keymap()(*ARGS, **KWDS) == (1, 2, "a", 3, "b", 4)
    assert keymap(flat=False)(*ARGS, **KWDS) == ((1, 2), {"a": 3, "b": 4})
    assert keymap(typed=True)(*ARGS, **KWDS) == (1, 2, "a", 3, "b", 4, int, int, int, int)
    assert keymap(typed=True, flat=False)(*ARGS, **KWDS) == (
        (1, 2),
        {"a": 3, "b": 4},
        (int, int),
        (int, int),
    )
    s = SENTINEL
    assert keymap(sentinel=s)(1, 2, a=3) == (1, 2, s, "a", 3)
    assert keymap(typed=True, sentinel=s)(1, 2, a=3) == (1, 2, s, "a", 3, s, int, int, s, int)
    assert keymap()(x=1) == ("x", 1)


def test_keymap_fast_type_collapse():
    assert keymap()(1) == 1
    assert keymap()("a") == "a"
    assert keymap()(b"a") == b"a"
    assert keymap()(frozenset({1})) == frozenset({1})
    assert keymap()(None) is None
    assert keymap()(1.0) == (1.0,)
    assert keymap()(True) == (True,)
    assert keymap()((1,)) == ((1,),)
    assert keymap()() == ()
    assert keymap(typed=True)(1) == (1, int)
    assert keymap(fasttypes={float})(1.0) == 1.0
    assert keymap(fasttypes={float})(1) == (1,)


def test_keymap_keywords_are_sorted_by_name():
    assert keymap()(b=1, a=2, c=3) == ("a", 2, "b", 1, "c", 3)
    assert keymap(typed=True)(b=1.0, a=2) == ("a", 2, "b", 1.0, int, float)
    assert keymap(typed=True, flat=False)(b=1.0, a=2) == ((), {"b": 1.0, "a": 2}, (), (int, float))


def test_keymap_special_keywords_replace_builtins():
    reverse = keymap(sorted=lambda items: sorted(items, reverse=True))
    assert reverse(a=1, b=2) == ("b", 2, "a", 1)
    as_list = keymap(tuple=list, typed=True)
    assert as_list(1, a=2) == [1, "a", 2, int, int]
    named = keymap(type=lambda value: type(value).__name__, typed=True)
    assert named(1, a="x") == (1, "a", "x", "int", "str")
    assert keymap(len=lambda key: 1)("a", "b") == "a"  # "length one": the first item is the key
    assert keymap()._config == {}
    assert keymap(extra=1)._config == {"extra": 1}


def test_keymap_state():
    mapper = keymap()
    assert (mapper.typed, mapper.flat, mapper.inner, mapper.outer) == (False, True, None, None)
    assert mapper.__stub__ == ""
    assert not hasattr(mapper, "__type__")
    assert hashmap().__type__ is None and hashmap().__stub__ == "algorithm"
    assert stringmap(encoding="utf_8").__type__ == "utf_8"
    assert stringmap().__stub__ == "encoding"
    assert picklemap().__stub__ == "serializer"
    assert picklemap(serializer=pickle).__type__ == "pickle"
    assert picklemap(serializer="dill").__type__ == "dill"
    assert picklemap()._config == {"byref": True}
    assert picklemap(byref=False)._config == {"byref": False}


def test_non_flat_keys_hold_the_kwds_dict():
    key = keymap(flat=False)(1, a=[2])
    assert key == ((1,), {"a": [2]})
    with pytest.raises(TypeError):
        hash(key)


def test_decoding_is_not_implemented():
    for mapper in (keymap(), hashmap(), stringmap(), picklemap()):
        with pytest.raises(NotImplementedError, match="Key decoding is not implemented"):
            mapper.decode(1)
        with pytest.raises(NotImplementedError, match="Key decryption is not implemented"):
            mapper.decrypt(1)
        with pytest.raises(NotImplementedError, match="Key decoding is not implemented"):
            mapper.loads(1)


def test_dumps_encodes_one_object():
    assert keymap().dumps(1) == 1
    assert keymap().dumps([1], a=2) == ([1], "a", 2)
    assert stringmap().dumps((1, 2)) == "((1, 2),)"
    assert keymap(flat=False).encode(1) == 1
    assert keymap().encrypt(1, a=2) == ((1,), {"a": 2})


def test_keymap_repr():
    assert repr(keymap()) == "keymap()"
    assert repr(hashmap(algorithm="md5")) == "hashmap(algorithm='md5')"
    assert repr(picklemap(serializer="dill")) == "picklemap(serializer='dill')"
    assert repr(keymap(typed=True)) == "keymap(typed=True)"
    assert repr(keymap(sentinel=SENTINEL)) == "keymap(sentinel=<SENTINEL>)"
    assert repr(stringmap(typed=True, flat=False, encoding="utf_8")) == (
        "stringmap(typed=True, flat=False, encoding='utf_8')"
    )
    assert repr(hashmap()) == "hashmap()"
    assert repr(hashmap(algorithm="md5") + keymap()) == "keymap()*"
    assert repr(keymap() + hashmap(algorithm="md5")) == "hashmap(algorithm='md5')*"
    assert str(hashmap(algorithm="md5")) == repr(hashmap(algorithm="md5"))


# --- hashmap, stringmap, picklemap -------------------------------------------------------


def test_hashmap_must_examples():
    assert hashmap()(*ARGS, **KWDS) == hash((1, 2, "a", 3, "b", 4))
    assert hashmap(typed=True)(*ARGS, **KWDS) == hash((1, 2, "a", 3, "b", 4, int, int, int, int))
    assert hashmap(algorithm="md5")(1) == "c4ca4238a0b923820dcc509a6f75849b"
    assert hashmap(algorithm="sha256")(*ARGS, **KWDS) == (
        hashlib.sha256(repr((1, 2, "a", 3, "b", 4)).encode()).hexdigest()
    )


def test_hashmap_failures():
    with pytest.raises(TypeError):
        hashmap(flat=False)(1, a=2)  # (args, dict) is unhashable
    with pytest.raises(TypeError):
        hashmap(extra=1)(1)  # crypto.hash takes no other keywords
    assert isinstance(hashmap(algorithm="md5", flat=False)(1, a=[2]), str)


def test_stringmap_must_examples():
    assert stringmap()(*ARGS, **KWDS) == "(1, 2, 'a', 3, 'b', 4)"
    assert stringmap()("a") == "a"
    assert stringmap()(1.0) == "(1.0,)"
    assert eval(stringmap(flat=False)(*ARGS, **KWDS)) == (ARGS, KWDS)
    assert stringmap(typed=True)(*ARGS, **KWDS) == str((1, 2, "a", 3, "b", 4, int, int, int, int))
    assert stringmap()(SAMPLE) == SAMPLE_TEXT
    assert stringmap(encoding="utf_8")(SAMPLE) == _b(SAMPLE_TEXT)
    assert stringmap(encoding="repr")("a") == "'a'"
    assert stringmap(encoding="bytes", strict=False)("a") == b"a"


def test_picklemap_must_examples():
    dilled = picklemap(serializer="dill")
    assert dilled(*ARGS, **KWDS) == dill.dumps((1, 2, "a", 3, "b", 4))
    assert dilled(*ARGS, **KWDS) == dill.dumps((1, 2, "a", 3, "b", 4), byref=True)
    assert dilled(1) == crypto.pickle(1, serializer="dill")
    assert dill.loads(picklemap(serializer="dill", flat=False)(*ARGS, **KWDS)) == (ARGS, KWDS)
    assert dill.loads(picklemap(serializer="dill", typed=True)(*ARGS, **KWDS)) == (
        (1, 2, "a", 3, "b", 4, int, int, int, int)
    )
    assert picklemap(serializer="json")(1, 2) == "[1, 2]"
    assert picklemap(serializer=json)(1, 2) == "[1, 2]"
    assert pickle.loads(picklemap(serializer="pickle")(1, 2)) == (1, 2)
    assert picklemap()(1, 2) == repr((1, 2))


# --- chaining ----------------------------------------------------------------------------


def test_chaining_must_examples():
    h = hashmap(algorithm="md5")
    p = picklemap(serializer="dill")
    hp = p + h
    assert h(p(1)) == hp(1)
    assert hp.inner(1) == p(1)
    assert hp.outer(1) == h(1)
    assert bool(h.inner) is False
    assert bool(hp.inner) is True
    assert bool(h.outer) is False
    assert bool(hp.outer) is True
    assert hp.inner is not p
    assert hp.outer is not h
    assert repr(hp) == "hashmap(algorithm='md5')*"
    expected = "c7483051dc5df58359faa78d4593981c"
    if sys.version_info < (3, 14):
        expected = "bfac8a39dc4b0d616a0805a453698556"
    assert hp(1) == expected
    assert hp(1) == hashlib.md5(repr(dill.dumps(1)).encode()).hexdigest()


def test_chaining_nests():
    chain = hashmap() + stringmap() + picklemap()
    assert repr(chain) == "picklemap()*"
    assert chain(1) == repr(str(hash(1)))


def test_chained_inner_sees_one_tuple_argument():
    assert (keymap() + stringmap())(1, 2) == "((1, 2),)"
    assert stringmap()(1, 2) == "(1, 2)"
    assert (keymap() + stringmap(flat=False))(1, a=2) == str((((1,), {"a": 2}),))


def test_chaining_is_associative():
    h, s, p = hashmap(algorithm="md5"), stringmap(), picklemap(serializer="dill")
    for args in ((1,), (1, 2), ("x", 2.5)):
        assert (h + s + p)(*args) == (h + (s + p))(*args)
        # every level formats the key it is handed once more before passing it inwards
        assert (h + s + p)(*args) == p(s(h(keymap()(keymap()(*args)))))


def test_chaining_errors():
    with pytest.raises(TypeError, match="can't concatenate 'keymap' and 'int' objects"):
        keymap() + 1
    mapper = keymap() + keymap()
    with pytest.raises(NotImplementedError, match="Combine keymaps with '\\+'"):
        mapper.inner = keymap()
    with pytest.raises(NotImplementedError, match="Combine keymaps with '\\+'"):
        mapper.outer = keymap()


def test_chaining_copies_config():
    left, right = keymap(), stringmap(strict=False)
    combined = left + right
    combined._config["strict"] = True
    assert right._config == {"strict": False}


def test_bigdata():
    np = pytest.importorskip("numpy")
    x = np.arange(2000)
    y = x.copy()
    y[1000] = -1
    h = hashmap(algorithm="md5")
    p = picklemap(serializer="dill")
    hp = p + h
    assert h(x) == h(y)  # repr elides the middle of a large array
    assert p(x) != p(y)
    assert hp(x) != hp(y)


# --- _stub_decoder -----------------------------------------------------------------------


def test_stub_decoder_must_examples():
    key = [1, 2, 3, 4, 5]
    mapper = picklemap(serializer="pickle")
    assert _stub_decoder(mapper)(mapper(key))[0] == key
    assert _stub_decoder("pickle")(mapper(key))[0] == key
    mapper = picklemap()
    assert _stub_decoder(mapper)(mapper(key))[0] == key
    assert _stub_decoder("repr")(mapper(key))[0] == key
    mapper = keymap()
    assert _stub_decoder(mapper)(mapper(key))[0] == key
    assert _stub_decoder(None)(mapper(key))[0] == key


def test_stub_decoder_kinds():
    assert _stub_decoder("dill") is dill.loads
    assert _stub_decoder(picklemap(serializer="dill")) is dill.loads
    assert _stub_decoder(stringmap())("(1, 'a')") == (1, "a")
    assert _stub_decoder(hashmap())("12") == 12
    with pytest.raises(ValueError):
        _stub_decoder("repr")("__import__('os').getcwd()")  # literals only, nothing runs


# --- issue 84: a call's keyword named self or cls ----------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_keywords_named_self_and_cls_are_keys(kind):
    mapper = kind()
    assert mapper(self=1, cls=2) == kind()(cls=2, self=1)
    assert keymap()(self=1, cls=2) == ("cls", 2, "self", 1)
    assert keymap().encode(self=1) == ("self", 1)
    assert keymap().encrypt(self=1) == ((), {"self": 1})
    assert keymap().dumps(0, self=1) == (0, "self", 1)


def test_keymap_classes_pickle_by_their_public_path():
    for kind in ALL_KINDS:
        assert kind.__module__ == "klepto.keymaps"
        assert getattr(keymaps, kind.__name__) is kind
        assert b"klepto.keymaps" in pickle.dumps(kind())


def test_method_key_without_ignoring_self():
    class Shape:
        def area(self, x):
            return x

    shape = Shape()
    args, kwds = _keygen(Shape.area, (), shape, 2)
    assert keymap()(*args, **kwds) == ("self", shape, "x", 2)


# --- pickling ----------------------------------------------------------------------------

PICKLABLE = [
    keymap(),
    keymap(typed=True, sentinel=SENTINEL),
    keymap(flat=False),
    hashmap(algorithm="md5"),
    stringmap(encoding="utf_8", strict=False),
    picklemap(serializer="dill"),
    picklemap(serializer="pickle", typed=True),
    picklemap(serializer="dill") + hashmap(algorithm="md5"),
    hashmap() + stringmap() + picklemap(),
]


@pytest.mark.parametrize("mapper", PICKLABLE, ids=repr)
@pytest.mark.parametrize("module", [pickle, dill], ids=["pickle", "dill"])
def test_keymaps_pickle(mapper, module):
    copy_ = module.loads(module.dumps(mapper))
    assert type(copy_) is type(mapper)
    assert repr(copy_) == repr(mapper)
    assert copy_(1, "x", a=2) == mapper(1, "x", a=2)
    assert copy_.sentinel is mapper.sentinel


# --- the plan hook -----------------------------------------------------------------------


def target(x, y=2, *args, k=0, **kwds):
    return None


def classic_key(mapper, func, ignore, rounder, call):
    args, kwds = call
    if rounder is not None:
        args, kwds = rounder(*args, **kwds)
    args, kwds = _keygen(func, ignore, *args, **kwds)
    return mapper(*args, **kwds)


def test_plan_is_the_classic_key_algorithm():
    mapper = hashmap(algorithm="md5")
    plan = mapper.plan(target, ("y",), None)
    assert plan((1, 5), {"k": 3}) == crypto.hash(("k", 3, "x", 1, "y", NULL), "md5")
    rounded = keymap().plan(target, (), simple_round_factory(1))
    assert rounded((1.26,), {"k": 2.22}) == ("k", 2.2, "x", 1.3, "y", 2)


def test_plan_works_for_every_keymap_and_pickles():
    for mapper in PICKLABLE:
        plan = mapper.plan(target, "k", deep_round_factory(0))
        key = plan((1.4, (2.6,)), {})
        assert key == classic_key(mapper, target, "k", deep_round_factory(0), ((1.4, (2.6,)), {}))
        assert dill.loads(dill.dumps(plan))((1.4, (2.6,)), {}) == key


def test_plan_does_not_call_the_function():
    def explode(*args, **kwds):
        raise AssertionError("called")

    assert keymap().plan(explode, (), None)((1,), {"x": 2}) == (1, "x", 2)


values = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3)
)
names = st.sampled_from(["a", "b", "c", "k", "x", "y", "self", "cls"])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.sampled_from(
        [keymap(), stringmap(), hashmap(algorithm="md5"), picklemap(serializer="dill")]
    ),
    st.lists(values, max_size=4).map(tuple),
    st.dictionaries(names, values, max_size=3),
    st.sampled_from([(), "x", ("y", "**"), (0, "*"), ("k", 1)]),
    st.sampled_from([None, 1, 3]),
)
def test_plan_matches_classic_key_for_random_calls(mapper, args, kwds, ignore, tol):
    rounder = None if tol is None else simple_round_factory(tol)
    expected = classic_key(mapper, target, ignore, rounder, (args, kwds))
    assert mapper.plan(target, ignore, rounder)(args, kwds) == expected


# --- flat keys versus the spec's construction --------------------------------------------


def spec_flat_key(args, kwds, typed, sentinel):
    """Section 3.2 steps 1-4, written out independently."""
    marks = () if sentinel is NOSENTINEL else (sentinel,)
    items = sorted(kwds.items())
    key = list(args)
    if kwds:
        key += list(marks)
        for name, value in items:
            key += [name, value]
    if typed:
        key += list(marks) + [type(arg) for arg in args]
        if kwds:
            key += list(marks) + [type(value) for _, value in items]
    elif len(key) == 1 and type(key[0]) in {int, str, bytes, frozenset, type(None)}:
        return key[0]
    return tuple(key)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(values | st.binary(max_size=2) | st.tuples(values), max_size=4).map(tuple),
    st.dictionaries(names, values, max_size=4),
    st.booleans(),
    st.sampled_from([NOSENTINEL, SENTINEL, "|"]),
)
def test_flat_keys_follow_the_spec_construction(args, kwds, typed, sentinel):
    expected = spec_flat_key(args, kwds, typed, sentinel)
    assert keymap(typed=typed, sentinel=sentinel)(*args, **kwds) == expected
    assert stringmap(typed=typed, sentinel=sentinel)(*args, **kwds) == str(expected)
    dilled = picklemap(typed=typed, sentinel=sentinel, serializer="dill")(*args, **kwds)
    assert dilled == dill.dumps(expected, byref=True)
    nested = keymap(typed=typed, flat=False, sentinel=sentinel)(*args, **kwds)
    assert nested[:2] == (args, kwds)
