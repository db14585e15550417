"""klepto._inspect: NULL, signature, validate, isvalid, _keygen, keygen, strip_markup (spec §5)."""

import copy
import pickle
from functools import partial

import dill
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klepto import _inspect, crypto
from klepto._inspect import (
    NULL,
    _keygen,
    isvalid,
    keygen,
    signature,
    strip_markup,
    validate,
)
from klepto.keymaps import hashmap, keymap, picklemap, stringmap

# --- functions under inspection (module level, so Python's messages name them plainly) ------


def bar(x, y, z, a=1, b=2, *args):
    return None


def add(x, y):
    return x + y


def foo(x, y, z, a=1, b=2):
    return None


class Bar:
    def foo(self, x, y, z, a=1, b=2):
        return None


class Callable:
    def __call__(self, x, y, z, a=1, b=2):
        return None


def with_keywords(x, y=2, *args, k=3, m, **kw):
    return None


def positional_only(x, /, y, *, k, m=3):
    return None


def no_parameters():
    return None


def only_varargs(*args):
    return None


class Point:
    def __init__(self, a, b=2):
        self.a, self.b = a, b


def error_type(function, *args, **kwds):
    try:
        function(*args, **kwds)
    except TypeError as error:
        return type(error)
    return None


# --- NULL -------------------------------------------------------------------------------


def test_null_is_a_singleton_with_plain_repr():
    assert repr(NULL) == "NULL"
    assert str(NULL) == "NULL"
    assert NULL == _inspect.NULL
    assert NULL != None  # noqa: E711 - equality is identity
    assert copy.copy(NULL) is NULL
    assert copy.deepcopy([NULL])[0] is NULL


def test_null_pickles_as_the_singleton():
    assert pickle.loads(pickle.dumps(NULL)) is NULL
    assert dill.loads(dill.dumps((1, NULL)))[1] is NULL


def test_null_hash_is_fixed():
    assert hash(NULL) == hash(NULL) == 0x4E554C4C


# --- signature ---------------------------------------------------------------------------


def test_signature_must_examples():
    assert signature(bar) == (("x", "y", "z", "a", "b"), {"a": 1, "b": 2}, "args", "")
    assert signature(partial(bar, 0)) == (
        ("y", "z", "a", "b"),
        {"a": 1, "!x": 0, "b": 2},
        "args",
        "",
    )
    assert signature(partial(bar, y=10)) == (
        ("x", "!y", "z", "a", "b"),
        {"a": 1, "y": 10, "b": 2},
        "args",
        "",
    )
    assert signature(partial(bar, 0, b=10)) == (
        ("y", "z", "a", "!b"),
        {"a": 1, "!x": 0, "b": 10},
        "args",
        "",
    )


def test_signature_safe_must_examples():
    assert signature(pow, safe=True) == (None, None, None, None)
    assert signature(partial(add, 0, x=0), safe=True) == (None, None, None, None)
    assert signature(partial(add, z=0), safe=True) == (("x", "y"), {"z": 0}, "", "")
    assert signature(partial(add, 0), safe=True) == (("y",), {"!x": 0}, "", "")


def test_signature_not_variadic():
    assert signature(bar, variadic=False) == (("x", "y", "z", "a", "b"), {"a": 1, "b": 2})
    assert signature(min, variadic=False, safe=True) == (None, None)


def test_signature_without_markup():
    assert signature(partial(bar, 0, b=10), markup=False) == (
        ("y", "z", "a", "b"),
        {"a": 1, "b": 10},
        "args",
        "",
    )
    assert signature(partial(bar, y=10), markup=False)[:2] == (
        ("x", "y", "z", "a", "b"),
        {"a": 1, "b": 2, "y": 10},
    )
    # a fixed positional keeps its own default when markup is off
    assert signature(partial(foo, 0, 1, 2, 3), markup=False)[:2] == (("b",), {"a": 1, "b": 2})


def test_signature_errors():
    with pytest.raises(TypeError, match=r"add\(\) got multiple values for keyword argument 'x'"):
        signature(partial(add, 0, x=0))
    with pytest.raises(TypeError, match="is not a Python function"):
        signature(pow)
    with pytest.raises(TypeError, match="is not a Python function"):
        signature(len, variadic=False)
    with pytest.raises(TypeError, match="is not a Python function"):
        signature(42)


def test_signature_of_methods_instances_and_classes():
    expected = (("x", "y", "z", "a", "b"), {"a": 1, "b": 2}, "", "")
    assert signature(Bar().foo) == expected
    assert signature(Callable()) == expected
    assert signature(Bar.foo)[0] == ("self", "x", "y", "z", "a", "b")
    assert signature(Point) == (("a", "b"), {"b": 2}, "", "")
    assert signature(partial(Bar().foo, 1)) == (
        ("y", "z", "a", "b"),
        {"a": 1, "b": 2, "!x": 1},
        "",
        "",
    )


def test_signature_keyword_only_and_varkw():
    assert signature(with_keywords) == (("x", "y"), {"y": 2, "k": 3}, "args", "kw")
    assert signature(positional_only) == (("x", "y"), {"m": 3}, "", "")


def test_signature_nested_partials_apply_in_call_order():
    nested = partial(partial(bar, 0, a=5), 1, b=6)
    assert signature(nested) == (
        ("z", "!a", "!b"),
        {"a": 5, "b": 6, "!x": 0, "!y": 1},
        "args",
        "",
    )


# --- strip_markup ------------------------------------------------------------------------


def test_strip_markup():
    names, defaults = signature(partial(bar, 0, b=10))[:2]
    assert strip_markup(names, defaults) == (("y", "z", "a", "b"), {"a": 1, "b": 10})
    assert strip_markup(("x",), {}) == (("x",), {})


identifiers = st.from_regex(r"!?[a-z]{1,4}", fullmatch=True)


@settings(deadline=None, derandomize=True)
@given(st.lists(identifiers, max_size=6), st.dictionaries(identifiers, st.integers(), max_size=6))
def test_strip_markup_is_idempotent_and_removes_all_marks(names, defaults):
    once = strip_markup(names, defaults)
    assert strip_markup(*once) == once
    assert not any(name.startswith("!") for name in once[0])
    assert not any(key.startswith("!") for key in once[1])
    assert set(once[1]) == {key for key in defaults if not key.startswith("!")}


# --- validate / isvalid ------------------------------------------------------------------

FOO_FORMS = [
    foo,
    Bar().foo,
    Callable(),
    partial(foo, 0, 1),
    partial(foo, 0, x=4),
    partial(foo, 0, 1, 2, 3, 4, 5, 6, 7),
    partial(foo, 0, z=1, b=2),
    partial(foo, 0, r=4),
    partial(foo, 0, a=2),
]
FOO_CALLS = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1, 2, 3, 4, 5), {}),
    ((1, 2, 3, 4, 5, 6), {}),
    ((1, 2), {"z": 3}),
    ((1,), {"y": 2, "z": 3, "b": 5}),
    ((1, 2, 3), {"x": 1}),
    ((1, 2, 3), {"r": 1}),
    ((), {"x": 1, "y": 2, "z": 3}),
]


@pytest.mark.parametrize("form", FOO_FORMS, ids=repr)
@pytest.mark.parametrize("args, kwds", FOO_CALLS)
def test_validate_raises_exactly_when_the_call_does(form, args, kwds):
    expected = error_type(form, *args, **kwds)
    assert error_type(validate, form, *args, **kwds) is expected
    assert isvalid(form, *args, **kwds) is (expected is None)


def test_validate_message_matches_python_for_unexpected_keyword():
    form = partial(foo, 0, r=4)
    with pytest.raises(TypeError) as real:
        form(1)
    with pytest.raises(TypeError) as checked:
        validate(form, 1)
    assert str(checked.value)[:24] == str(real.value)[:24] == "foo() got an unexpected "


def test_validate_messages():
    assert validate(partial(foo, 0, a=2), 1, 2) is None
    with pytest.raises(TypeError, match=r"foo\(\) takes at most 5 arguments \(6 given\)"):
        validate(foo, 1, 2, 3, 4, 5, 6)
    with pytest.raises(TypeError, match=r"foo\(\) takes at least 3 arguments \(1 given\)"):
        validate(foo, 1)
    with pytest.raises(TypeError, match="foo\\(\\) got multiple values for keyword argument 'x'"):
        validate(foo, 1, 2, 3, x=1)
    with pytest.raises(TypeError, match="is not a Python function"):
        validate(min, 1, 2)


def test_isvalid_on_builtins_makes_the_call():
    assert isvalid(min, 0, 1) is True
    assert isvalid(min, 0) is False
    assert isvalid(min) is False


def test_isvalid_partial_must_examples():
    p3 = partial(add, 0)
    assert isvalid(p3, 0) is True
    assert isvalid(p3) is False
    assert isvalid(p3, 0, 1) is False
    assert isvalid(p3, x=0) is False
    assert isvalid(p3, 0, y=1) is False


class Method:
    def call(self, x, y=1):
        return None


def never_called(*args, **kwds):
    raise AssertionError("validate must not call")


TARGETS = [
    foo,
    bar,
    with_keywords,
    positional_only,
    no_parameters,
    only_varargs,
    Bar().foo,
    Bar.foo,
    Callable(),
    Method().call,
    Point,
]
NAMES = ["x", "y", "z", "a", "b", "k", "m", "r", "self", "args", "kw"]
small_args = st.lists(st.integers(0, 9), max_size=5).map(tuple)
small_kwds = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 9), max_size=4)


@st.composite
def callables(draw):
    target = draw(st.sampled_from(TARGETS))
    for _ in range(draw(st.integers(0, 2))):
        target = partial(target, *draw(small_args.map(lambda a: a[:3])), **draw(small_kwds))
    return target


@settings(max_examples=400, deadline=None, derandomize=True)
@given(callables(), small_args, small_kwds)
def test_validate_agrees_with_a_real_call(target, args, kwds):
    expected = error_type(target, *args, **kwds)
    assert error_type(validate, target, *args, **kwds) is expected
    assert isvalid(target, *args, **kwds) is (expected is None)


# --- _keygen -----------------------------------------------------------------------------

P = partial(bar, 0, b=10)
P_ARGS = ("0", "1", "2", "3", "4", "5", "6")
P_KWDS = {"c": "30", "d": "40"}
PLAIN = {"a": "2", "b": "3", "c": "30", "d": "40", "y": "0", "z": "1"}

KEYGEN_CASES = [
    ((), (("4", "5", "6"), PLAIN)),
    ((0, 1, 3, 5, "*", "b", "c"), ((), {**PLAIN, "b": NULL, "c": NULL, "y": NULL, "z": NULL})),
    ((0, 1, 3, 5, "**", "b", "c"), (("4", NULL, "6"), {"a": "2", "b": NULL, "y": NULL, "z": NULL})),
    (("*",), ((), PLAIN)),
    (("**",), (("4", "5", "6"), {"a": "2", "b": "3", "y": "0", "z": "1"})),
    (("*", "**"), ((), {"a": "2", "b": "3", "y": "0", "z": "1"})),
    ("a", (("4", "5", "6"), {**PLAIN, "a": NULL})),
    (2, (("4", "5", "6"), {**PLAIN, "a": NULL})),
    ((4, 6), ((NULL, "5", NULL), PLAIN)),
    (("x", "zz"), (("4", "5", "6"), PLAIN)),
    (["d", 0], (("4", "5", "6"), {**PLAIN, "d": NULL, "y": NULL})),
]


@pytest.mark.parametrize("ignored, expected", KEYGEN_CASES)
def test_keygen_cases(ignored, expected):
    assert _keygen(P, ignored, *P_ARGS, **P_KWDS) == expected


def test_keygen_key_order_defaults_then_keywords_then_positionals():
    assert list(_keygen(P, (), *P_ARGS, **P_KWDS)[1]) == ["a", "b", "c", "d", "y", "z"]
    masked = _keygen(P, (0, 1, 3, 5, "*", "b", "c"), *P_ARGS, **P_KWDS)[1]
    assert list(masked) == ["a", "b", "c", "d", "y", "z"]

    def f(x, y=2):
        return None

    assert _keygen(f, (), 1) == ((), {"y": 2, "x": 1})
    assert list(_keygen(f, (), 1)[1]) == ["y", "x"]
    args, kwds = _keygen(f, (), 1)
    assert stringmap(flat=False)(*args, **kwds) == "((), {'y': 2, 'x': 1})"
    assert list(_keygen(f, (), y=5, x=1)[1]) == ["y", "x"]
    assert list(_keygen(with_keywords, (), 1, m=0, extra=1)[1]) == ["y", "k", "m", "extra", "x"]


def test_keygen_ignored_parameter_left_out_by_caller_is_null_in_parameter_order():
    def f(x, y, z=2):
        return None

    assert list(_keygen(f, ("y",), 1)[1].items()) == [("z", 2), ("x", 1), ("y", NULL)]


def test_keygen_special_cases():
    p3 = partial(add, 0)
    assert _keygen(p3, [], 0) == ((), {"y": 0})
    assert _keygen(partial(add, z=0), [], 0) == ((), {"x": 0, "z": 0})
    assert _keygen(partial(add, 0, x=0), [], 0) == ((0,), {})
    assert _keygen(min, [], x=0, y=1) == ((), {"y": 1, "x": 0})
    assert _keygen(min, [0, 1], 0) == ((0,), {})


def test_keygen_positional_wins_over_keyword():
    assert _keygen(add, (), 1, 2, x=5) == ((), {"x": 1, "y": 2})


def test_keygen_keyword_only_parameters_survive_double_star():
    assert _keygen(with_keywords, "**", 1, m=4, extra=9) == (
        (),
        {"y": 2, "k": 3, "m": 4, "x": 1},
    )
    assert _keygen(with_keywords, ("k",), 1, m=4) == ((), {"y": 2, "k": NULL, "m": 4, "x": 1})


class Widget:
    def area(self, x, y=1):
        return x * y


def test_keygen_removes_an_ignored_self_of_a_method_call():
    widget = Widget()
    assert _keygen(Widget.area, ("self",), widget, 3) == ((), {"y": 1, "x": 3})
    # positions count from the argument after self
    assert _keygen(Widget.area, ("self", 0), widget, 3) == ((), {"y": 1, "x": NULL})
    # not an instance with that method bound: self is NULLed, not removed
    assert _keygen(Widget.area, ("self",), 5, 3) == ((), {"y": 1, "self": NULL, "x": 3})
    # self not ignored: it stays part of the key
    assert _keygen(Widget.area, (), widget, 3) == ((), {"y": 1, "self": widget, "x": 3})
    assert _keygen(widget.area, (), 3) == ((), {"y": 1, "x": 3})


def test_keyword_arguments_named_like_the_helpers_own_parameters():
    def f(func, ignored, self=0, cls=0):
        return None

    call = {"func": 1, "ignored": 2, "self": 3, "cls": 4}
    assert _keygen(f, (), **call) == ((), {"self": 3, "cls": 4, "func": 1, "ignored": 2})
    assert _keygen(f, "func", **call)[1]["func"] is NULL
    assert validate(f, **call) is None
    assert isvalid(f, **call) is True
    assert isvalid(min, func=1) is False


def test_keygen_ignores_a_kwd_named_self_on_bound_methods():
    assert _keygen(Widget().area, (), 3, self=1) == ((), {"y": 1, "self": 1, "x": 3})


def test_keygen_reuses_cached_signature(monkeypatch):
    calls = []
    build = _inspect._build_spec

    def counting_build(function):
        calls.append(function)
        return build(function)

    monkeypatch.setattr(_inspect, "_build_spec", counting_build)

    def g(x, y=1):
        return None

    for value in range(50):
        _keygen(g, (), value)
        _keygen(partial(g, 1), ("y",), value)
    assert calls == [g]
    g.__defaults__ = (7,)  # changing the defaults must be seen
    assert _keygen(g, (), 1) == ((), {"y": 7, "x": 1})
    assert calls == [g, g]


class Recorder:
    """Callables that record whether they were ever called."""

    calls = []

    @staticmethod
    def plain(x, y=2, *args, k=1, **kw):
        Recorder.calls.append("plain")

    def method(self, x, y=2):
        Recorder.calls.append("method")

    def __call__(self, x, y=2):
        Recorder.calls.append("call")


ignore_items = st.sampled_from(["x", "y", "k", "self", "*", "**", 0, 1, 2, 5])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.sampled_from([Recorder.plain, Recorder().method, Recorder.method, Recorder()]),
    st.lists(ignore_items, max_size=4),
    st.lists(st.integers(0, 9) | st.text(max_size=2), max_size=5).map(tuple),
    st.dictionaries(st.sampled_from(["k", "y", "q", "z"]), st.integers(0, 9), max_size=3),
)
def test_keygen_never_calls_the_function(function, ignored, args, kwds):
    Recorder.calls.clear()
    result_args, result_kwds = _keygen(function, ignored, *args, **kwds)
    signature(function, safe=True)
    isvalid(function, *args, **kwds) if not isinstance(function, Recorder) else None
    assert Recorder.calls == []
    assert isinstance(result_args, tuple)
    assert isinstance(result_kwds, dict)
    if not ignored:
        assert set(kwds) <= set(result_kwds)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 9), min_size=2, max_size=6), st.lists(ignore_items, max_size=4))
def test_keygen_output_binds_like_the_call(args, ignored):
    # without ignoring, re-calling the function with the normalised pieces binds the same way
    surplus, kwds = _keygen(bar, (), *args)
    names = ("x", "y", "z", "a", "b")
    assert surplus == tuple(args[5:])
    assert {name: kwds[name] for name in names if name in kwds} == {
        "a": 1,
        "b": 2,
        **dict(zip(names, args)),
    }
    # ignoring never adds surplus arguments
    assert len(_keygen(bar, ignored, *args)[0]) <= len(surplus)


# --- keygen ------------------------------------------------------------------------------


def test_keygen_decorator_must_examples():
    @keygen("x", "**")
    def f(x, y, z=2):
        return x + y + z

    assert f(0, 1, 2) == ("x", NULL, "y", 1, "z", 2)
    assert f(0, 1, r=3) == ("x", NULL, "y", 1, "z", 2)
    assert f.valid() is False
    assert f(0, 1, z=10) == ("x", NULL, "y", 1, "z", 10)
    assert f.valid() is True
    assert f.call() == 11
    f.register(hashmap(algorithm="md5"))
    assert f(0, 1, z=10) == crypto.hash(("x", NULL, "y", 1, "z", 10), "md5")


def test_keygen_decorator_attributes():
    def f(x, y, z=2):
        return x + y + z

    decorated = keygen("y")(f)
    assert decorated.__name__ != f.__name__
    assert decorated.__ignored__ == ("y",)
    assert decorated.__func__ is f
    assert isinstance(decorated.keymap(), keymap)
    assert repr(decorated.keymap()) == "keymap()"
    assert decorated(1, 2) == ("x", 1, "y", NULL, "z", 2)
    assert decorated.__args__() == ((1, 2), {})
    decorated(1, y=5, z=3)
    assert decorated.__args__() == ((1,), {"y": 5, "z": 3})
    assert decorated.key() == ("x", 1, "y", NULL, "z", 3)
    decorated.register(stringmap)  # a class is instantiated
    assert isinstance(decorated.keymap(), stringmap)
    assert decorated.key() == str(("x", 1, "y", NULL, "z", 3))
    with pytest.raises(TypeError, match="'42' is not a klepto keymap instance"):
        decorated.register(42)


def test_keygen_with_explicit_keymap():
    @keygen(keymap=picklemap(serializer="dill"))
    def f(x):
        return x

    assert dill.loads(f(1)) == ("x", 1)


def test_keygen_rounding_must_example():
    @keygen("x", 2, tol=2)
    def add4(w, x, y, z):
        return w + x + y + z

    assert add4(1.11111, 2.222222, 3.333333, 4.444444) == (
        "w",
        1.11,
        "x",
        NULL,
        "y",
        NULL,
        "z",
        4.44,
    )
    assert add4.call() == 11.111108999999999


def test_keygen_deep_rounding():
    @keygen(tol=1, deep=True)
    def f(x):
        return x

    assert f([1.23, (4.56,)], y=7.77) == ("x", [1.2, (4.6,)], "y", 7.8)
    assert keygen(tol=1)(f.__func__)([1.23]) == ("x", [1.23])


def test_keygen_on_a_method_ignoring_self():
    class Foo:
        @keygen("self")
        def bar(self, x, y):
            return x + y

    fu = Foo()
    assert Foo().bar(1, 2) == ("x", 1, "y", 2)
    assert Foo.bar(fu, 1, 2) == ("x", 1, "y", 2)
