"""klepto.rounding: simple/shallow/deep rounding decorators and factories (spec section 4)."""

import functools
import pickle

import dill
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klepto import rounding
from klepto.rounding import (
    deep_round,
    deep_round_factory,
    shallow_round,
    shallow_round_factory,
    simple_round,
    simple_round_factory,
)

DECORATORS = (simple_round, shallow_round, deep_round)
FACTORIES = (simple_round_factory, shallow_round_factory, deep_round_factory)


def add(x, y):
    return x + y


def test_all():
    assert set(rounding.__all__) == {"deep_round", "shallow_round", "simple_round"}


def test_simple_round_must_examples():
    rounded_add = simple_round(0)(add)
    assert rounded_add(2.54, 5.47) == 8.0
    assert rounded_add([2.54, "x"], [5.47, "y"]) == [2.54, "x", 5.47, "y"]


def test_deep_round_must_example():
    rounded_add = deep_round(tol=1)(add)
    assert rounded_add([2.54, "x"], [5.47, [8.99, "y"]]) == [2.5, "x", 5.5, [9.0, "y"]]


def test_shallow_round_must_example():
    rounded_add = shallow_round(tol=1)(add)
    assert rounded_add([2.54, "x"], [5.47, [8.99, "y"]]) == [2.5, "x", 5.5, [8.99, "y"]]


def test_default_tol_is_zero_and_rounder_carries_it():
    for decorator in DECORATORS:
        assert decorator().__round__.tol == 0
        assert decorator(3).__round__.tol == 3
    assert deep_round().__round__.tol == 0


def test_tol_none_disables_rounding():
    for decorator in DECORATORS:
        assert decorator(None)(add)(2.54, 5.47) == 2.54 + 5.47
    for factory in FACTORIES:
        assert factory(None)(1.23456, [1.5], k=2.5) == ((1.23456, [1.5]), {"k": 2.5})


def test_only_floats_are_rounded():
    rounder = deep_round_factory(0)
    args, kwds = rounder(1, True, "2.5", b"x", 2.6, k=3.4, n=7)
    assert args == (1, True, "2.5", b"x", 3.0)
    assert type(args[1]) is bool
    assert kwds == {"k": 3.0, "n": 7}


def test_deep_round_rebuilds_containers_with_their_type():
    args, kwds = deep_round_factory(1)((1.26, {2.22}), {"a": [3.33]}, k=frozenset({4.44}))
    assert args == ((1.3, {2.2}), {"a": [3.3]})
    assert type(args[0]) is tuple
    assert kwds == {"k": frozenset({4.4})}


def test_deep_round_accepts_non_str_dict_keys():
    assert deep_round_factory(1)({1: 2.22, (2, 3): [4.44]}) == (({1: 2.2, (2, 3): [4.4]},), {})


def test_deep_round_skips_strings_and_exceptions():
    error = ValueError(1.234)
    args, _ = deep_round_factory(1)("1.234", error)
    assert args[0] == "1.234"
    assert args[1] is error


def test_deep_round_generator_raises_type_error():
    with pytest.raises(TypeError, match="generator"):
        deep_round_factory(1)(x for x in [1.23])


def test_shallow_round_leaves_strings_dicts_and_iterators_alone():
    iterator = iter([1.25])
    args, _ = shallow_round_factory(1)("abc", {"ab": 1.25}, iterator)
    assert args == ("abc", {"ab": 1.25}, iterator)
    assert next(iterator) == 1.25  # not consumed


def test_shallow_round_keeps_unrebuildable_iterables():
    rng = range(3)
    args, _ = shallow_round_factory(1)(rng, (1.25, [1.25]), {1.25})
    assert args == (rng, (1.2, [1.25]), {1.2})


def test_rounders_accept_a_keyword_named_self():
    for factory in FACTORIES:
        assert factory(0)(self=1.4, cls=2.6) == ((), {"self": 1.0, "cls": 3.0})


def test_simple_round_ignores_containers():
    assert simple_round_factory(0)([1.5], k=(2.5,)) == (([1.5],), {"k": (2.5,)})


def test_wrapped_function_gets_rounded_args_and_wrapped_attribute():
    seen = []

    def record(*args, **kwds):
        seen.append((args, kwds))

    wrapper = simple_round(2)(record)
    assert wrapper.__wrapped__ is record
    wrapper(1.23456, z=9.87654)
    assert seen == [((1.23,), {"z": 9.88})]


def test_get_returns_partial_of_call():
    decorator = deep_round(2)
    bound = decorator.__get__("instance", str)
    assert isinstance(bound, functools.partial)
    assert bound.args == ("instance",)
    assert bound.func == decorator.__call__


@pytest.mark.parametrize("decorator", DECORATORS)
@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (dill.dumps, dill.loads)])
def test_decorators_and_rounders_pickle(decorator, dumps, loads):
    original = decorator(2)
    assert original.__reduce__() == (decorator, (2,))
    copy = loads(dumps(original))
    assert type(copy) is decorator
    assert copy.__round__.tol == 2
    assert loads(dumps(original.__round__))(1.234) == ((1.23,), {})


@settings(deadline=None, derandomize=True)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(), max_size=5),
    st.integers(min_value=0, max_value=6),
)
def test_rounders_agree_on_flat_arguments(values, tol):
    expected = tuple(round(v, tol) if isinstance(v, float) else v for v in values)
    for factory in FACTORIES:
        assert factory(tol)(*values) == (expected, {})


@settings(deadline=None, derandomize=True)
@given(st.recursive(st.floats(allow_nan=False), st.lists, max_leaves=8), st.integers(0, 4))
def test_deep_round_is_idempotent(value, tol):
    once = deep_round_factory(tol)(value)
    assert deep_round_factory(tol)(*once[0]) == once
