"""The binding plan behind the default keymap (klepto._binding).

A call's key is the tuple of its bound argument values: calls that ``inspect.Signature.bind``
binds to the same arguments (defaults applied) share a key, calls that bind differently never
do, and a call Python would reject never gets the key of a valid one.
"""

from __future__ import annotations

import functools
import inspect

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from klepto._binding import KWDS, Plan, plan_call
from klepto._inspect import NULL

P = inspect.Parameter


def f_plain(a, b, c=3):
    return a


def f_kwonly(a, *, k=1, m):
    return a


def f_varargs(a, *rest):
    return a


def f_varkw(a, **extra):
    return a


def f_posonly(a, /, b, c=3):
    return a


def f_posonly_kw(a, /, **extra):
    return a


def f_everything(a, b=2, /, c=3, *rest, k, m=5, **extra):
    return a


# --- positional, keyword, defaults --------------------------------------------------------


def test_positional_call_is_its_own_key():
    plan = plan_call(f_plain)
    args = (1, 2, 3)
    assert plan(args, {}) is args
    assert plan.fast_arity == 3


def test_defaults_are_filled_in():
    plan = plan_call(f_plain)
    assert plan((1, 2), {}) == (1, 2, 3)
    assert plan((1,), {"b": 2}) == (1, 2, 3)


def test_keyword_spellings_share_a_key():
    plan = plan_call(f_plain)
    spellings = [
        ((1, 2, 3), {}),
        ((1, 2), {"c": 3}),
        ((1,), {"b": 2, "c": 3}),
        ((), {"a": 1, "b": 2, "c": 3}),
        ((), {"c": 3, "b": 2, "a": 1}),
        ((1,), {"b": 2}),
    ]
    assert {plan(args, kwds) for args, kwds in spellings} == {(1, 2, 3)}


def test_keyword_only_parameters():
    plan = plan_call(f_kwonly)
    assert plan.fast_arity == -1
    assert plan((1,), {"m": 2}) == (1, 1, 2)
    assert plan((), {"a": 1, "m": 2, "k": 1}) == (1, 1, 2)
    assert plan((1,), {"m": 2, "k": 9}) == (1, 9, 2)


def test_varargs():
    plan = plan_call(f_varargs)
    assert plan((1,), {}) == (1,)
    assert plan((1, 2, 3), {}) == (1, 2, 3)
    assert plan((1, (2, 3)), {}) == (1, (2, 3))
    assert plan((), {"a": 1}) == (1,)


def test_extra_keywords_are_sorted_behind_a_marker():
    plan = plan_call(f_varkw)
    assert plan((1,), {}) == (1,)
    assert plan((1,), {"z": 1, "b": 2}) == (1, KWDS, "b", 2, "z", 1)
    assert plan((1,), {"b": 2, "z": 1}) == plan((), {"z": 1, "a": 1, "b": 2})


def test_positional_only_parameters():
    plan = plan_call(f_posonly)
    assert plan((1, 2), {}) == (1, 2, 3)
    assert plan((1,), {"b": 2}) == (1, 2, 3)
    loose = plan_call(f_posonly_kw)
    assert loose((1,), {"a": 2}) == (1, KWDS, "a", 2)  # valid: a lands in **extra


def test_everything_at_once():
    plan = plan_call(f_everything)
    key = plan((1, 2, 3, 4, 5), {"k": 6, "x": 7})
    assert key == (1, 2, 3, 4, 5, 6, 5, KWDS, "x", 7)
    bound = inspect.signature(f_everything).bind(1, 2, 3, 4, 5, k=6, x=7)
    bound.apply_defaults()
    assert key == (*bound.args, 6, 5, KWDS, "x", 7)


# --- calls Python rejects ----------------------------------------------------------------


def test_multiple_values_are_refused():
    plan = plan_call(f_plain)
    with pytest.raises(TypeError, match=r"f_plain\(\) got multiple values for argument 'a'"):
        plan((1,), {"a": 2})


def test_missing_arguments_are_refused():
    plan = plan_call(f_plain)
    with pytest.raises(TypeError, match=r"f_plain\(\) missing .*'b'"):
        plan((1,), {})
    with pytest.raises(TypeError, match="'m'"):
        plan_call(f_kwonly)((1,), {})


def test_missing_ignored_argument_is_refused_too():
    plan = plan_call(f_plain, "b")
    assert plan((1, 2), {}) == plan((1, 5), {})
    with pytest.raises(TypeError, match="'b'"):
        plan((1,), {})  # f_plain(1) fails: never answer it with f_plain(1, 2)'s result


def test_missing_ignored_keyword_only_argument_is_refused():
    def f(*, k):
        return k

    plan = plan_call(f, "k")
    assert plan((), {"k": 1}) == plan((), {"k": 2}) == ()
    with pytest.raises(TypeError, match="'k'"):
        plan((), {})  # f() fails: never answer it with f(k=1)'s result


def test_positional_arguments_to_a_function_without_them_are_refused():
    def f(**extra):
        return extra

    with pytest.raises(TypeError, match="takes 0 positional arguments but 1 were given"):
        plan_call(f, "**")((1,), {})


def test_unexpected_keyword_is_refused():
    plan = plan_call(f_plain)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        plan((1, 2), {"z": 3})
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        plan_call(f_plain, "**")((1, 2), {"z": 3})  # '**' cannot make it valid


def test_too_many_positionals_are_refused():
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4 were given"):
        plan_call(f_plain)((1, 2, 3, 4), {})
    with pytest.raises(TypeError, match="but 4 were given"):
        plan_call(f_plain, "*")((1, 2, 3, 4), {})  # '*' cannot make it valid


# --- partials, methods, builtins, classes -----------------------------------------------


def test_partial_fixing_a_positional():
    plan = plan_call(functools.partial(f_plain, 1))
    assert plan((2,), {}) == (2, 3)
    assert plan((), {"b": 2, "c": 3}) == (2, 3)


def test_partial_fixing_a_keyword():
    plan = plan_call(functools.partial(f_plain, b=5))
    assert plan((1,), {}) == (1, 5, 3)
    assert plan((1,), {"b": 6}) == (1, 6, 3)
    assert plan((), {"a": 1, "c": 3}) == (1, 5, 3)


def test_bound_method_leaves_self_out():
    class Thing:
        def method(self, x, y=2):
            return x

    plan = plan_call(Thing().method)
    assert plan((1,), {}) == (1, 2)
    assert plan.fast_arity == 2


def test_builtin_without_signature_keys_the_raw_call():
    plan = plan_call(min)
    assert plan((3, 1), {}) == (3, 1)
    assert plan((3, 1), {"key": abs}) == (3, 1, KWDS, "key", abs)


def test_builtin_with_signature_binds():
    plan = plan_call(pow)
    assert plan((2, 3), {}) == (2, 3, None)
    assert plan((2,), {"exp": 3}) == (2, 3, None)


def test_class_binds_its_constructor():
    class Point:
        def __init__(self, x, y=0):
            self.x, self.y = x, y

    plan = plan_call(Point)
    assert plan((1,), {}) == (1, 0)
    assert plan((), {"x": 1}) == (1, 0)


# --- ignore --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ignore", "same", "different"),
    [
        ("b", [((1, 2), {}), ((1, 9), {}), ((1,), {"b": 8})], ((2, 2), {})),
        (1, [((1, 2), {}), ((1, 9), {}), ((1,), {"b": 8})], ((2, 2), {})),
        (("a", 2), [((1, 2, 3), {}), ((5, 2, 7), {}), ((), {"a": 0, "b": 2})], ((1, 3), {})),
    ],
)
def test_ignore_by_name_and_position(ignore, same, different):
    plan = plan_call(f_plain, ignore)
    keys = {plan(args, kwds) for args, kwds in same}
    assert len(keys) == 1
    assert plan(*different) not in keys
    assert plan.fast_arity == -1


def test_ignore_keyword_only():
    plan = plan_call(f_kwonly, "k")
    assert plan((1,), {"m": 2, "k": 3}) == plan((1,), {"m": 2}) == (1, 2)


def test_ignore_star_drops_surplus_varargs():
    plan = plan_call(f_varargs, "*")
    assert plan((1,), {}) == plan((1, 2, 3), {}) == (1,)
    assert plan((2, 2), {}) != plan((1, 2), {})


def test_ignore_double_star_drops_extra_keywords():
    plan = plan_call(f_varkw, "**")
    assert plan((1,), {"x": 1}) == plan((1,), {"y": 2}) == plan((1,), {}) == (1,)


def test_ignore_an_extra_keyword_by_name():
    plan = plan_call(f_varkw, "noise")
    assert plan((1,), {"noise": 1, "x": 2}) == plan((1,), {"x": 2, "noise": 3})
    assert plan((1,), {"x": 2}) != plan((1,), {"x": 3})


def test_ignore_a_vararg_position():
    plan = plan_call(f_varargs, 2)
    assert plan((1, 2, 3), {}) == plan((1, 2, 4), {}) == (1, 2, NULL)
    assert plan((1, 2), {}) != plan((1, 2, 3), {})  # fewer arguments: another call
    everything = plan_call(f_varargs, 0)
    assert everything((1, 2), {}) == everything((5, 2), {}) == (2,)


def test_ignore_self_of_a_method():
    class Thing:
        def method(self, x):
            return x

    plan = plan_call(Thing.method, "self")
    assert plan((Thing(), 1), {}) == plan((Thing(), 1), {}) == (1,)
    assert plan((), {"self": Thing(), "x": 1}) == (1,)


def test_bad_ignore_entries():
    with pytest.raises(TypeError, match="ignore takes"):
        plan_call(f_plain, [1.5])


def test_plan_repr():
    assert repr(plan_call(f_plain)) == "<Plan nparams=3 fast_arity=3>"
    assert isinstance(plan_call(f_plain), Plan)


# --- property: same binding <=> same key ---------------------------------------------------

NAMES = ("p0", "p1", "q0", "q1", "q2", "k0", "k1")
EXTRA_NAMES = ("e0", "e1")
VALUES = st.integers(min_value=0, max_value=2)


@st.composite
def signatures(draw):
    """A random small signature: positional-only, positional-or-keyword, *args, kw-only,
    **kwargs, with defaults on a suffix of the positionals and on some kw-only ones."""
    posonly = [P(f"p{i}", P.POSITIONAL_ONLY) for i in range(draw(st.integers(0, 2)))]
    normal = [P(f"q{i}", P.POSITIONAL_OR_KEYWORD) for i in range(draw(st.integers(0, 3)))]
    positional = posonly + normal
    ndefaults = draw(st.integers(0, len(positional)))
    for index in range(len(positional) - ndefaults, len(positional)):
        positional[index] = positional[index].replace(default=draw(VALUES))
    params = list(positional)
    if draw(st.booleans()):
        params.append(P("rest", P.VAR_POSITIONAL))
    for i in range(draw(st.integers(0, 2))):
        default = draw(st.one_of(st.just(P.empty), VALUES))
        params.append(P(f"k{i}", P.KEYWORD_ONLY, default=default))
    if draw(st.booleans()):
        params.append(P("extra", P.VAR_KEYWORD))
    return inspect.Signature(params)


@st.composite
def calls(draw, signature):
    """Any call, mostly one the signature rejects."""
    nargs = draw(st.integers(0, len(signature.parameters) + 1))
    args = tuple(draw(VALUES) for _ in range(nargs))
    names = draw(st.lists(st.sampled_from(NAMES + EXTRA_NAMES), unique=True, max_size=4))
    return args, {name: draw(VALUES) for name in names}


@st.composite
def valid_calls(draw, signature):
    """A call the signature accepts, spelled at random: positionally or by keyword,
    defaults given or left out, keywords in any order."""
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    # Positional-only parameters without a default must be passed by position.
    required_prefix = max(
        (
            i + 1
            for i, p in enumerate(positional)
            if p.kind is P.POSITIONAL_ONLY and p.default is P.empty
        ),
        default=0,
    )
    npositional = draw(st.integers(required_prefix, len(positional)))
    args = [draw(VALUES) for _ in range(npositional)]
    kwds = {}
    for param in positional[npositional:]:
        if param.kind is P.POSITIONAL_ONLY:
            continue  # left out: it has a default
        if param.default is P.empty or draw(st.booleans()):
            kwds[param.name] = draw(VALUES)
    varargs = any(p.kind is P.VAR_POSITIONAL for p in params)
    if varargs and npositional == len(positional):
        args += [draw(VALUES) for _ in range(draw(st.integers(0, 2)))]
    for param in params:
        if param.kind is P.KEYWORD_ONLY and (param.default is P.empty or draw(st.booleans())):
            kwds[param.name] = draw(VALUES)
    if any(p.kind is P.VAR_KEYWORD for p in params):
        spare = [n for n in EXTRA_NAMES] + [
            p.name for p in positional if p.kind is P.POSITIONAL_ONLY
        ]
        for name in draw(st.lists(st.sampled_from(spare), unique=True, max_size=2)):
            kwds[name] = draw(VALUES)
    order = draw(st.permutations(list(kwds)))
    return tuple(args), {name: kwds[name] for name in order}


@st.composite
def rejected_calls(draw, signature):
    """A valid call with one mistake: a required argument left out, a parameter given twice,
    an unexpected keyword, or one positional argument too many."""
    args, kwds = draw(valid_calls(signature))
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    mistake = draw(st.sampled_from(["drop", "twice", "unexpected", "surplus"]))
    if mistake == "drop" and (kwds or args):
        if kwds and draw(st.booleans()):
            kwds.pop(draw(st.sampled_from(sorted(kwds))))
        elif args:
            args = args[:-1]
    elif mistake == "twice" and args:
        named = [p.name for p in positional[: len(args)] if p.kind is P.POSITIONAL_OR_KEYWORD]
        if named:
            kwds[draw(st.sampled_from(named))] = draw(VALUES)
    elif mistake == "unexpected":
        kwds["zz"] = draw(VALUES)
    else:
        args = (*args, draw(VALUES))
    return tuple(args), kwds


@st.composite
def ignores(draw, signature):
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    ]
    choices = [
        p.name
        for p in signature.parameters.values()
        if p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
    ]
    choices += [*range(len(positional) + 2), "*", "**", *EXTRA_NAMES]
    return tuple(draw(st.lists(st.sampled_from(choices), unique=True, max_size=3)))


def function_with(signature):
    def f(*args, **kwds):
        return args, kwds

    f.__signature__ = signature
    return f


def binding(signature, args, kwds):
    """The arguments ``Signature.bind`` gives the call, defaults applied; None if invalid.

    (Python 3.11's ``bind`` rejects a keyword named like a positional-only parameter even
    when ``**kwargs`` would take it, as a real call does; such keywords are moved there.)
    """
    params = signature.parameters.values()
    varkw = next((p.name for p in params if p.kind is P.VAR_KEYWORD), None)
    posonly = {p.name for p in params if p.kind is P.POSITIONAL_ONLY}
    spilled = {k: v for k, v in kwds.items() if k in posonly} if varkw else {}
    try:
        bound = signature.bind(*args, **{k: v for k, v in kwds.items() if k not in spilled})
    except TypeError:
        return None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    if spilled:
        arguments[varkw] = {**arguments[varkw], **spilled}
    return arguments


def without_ignored(signature, arguments, ignore):
    """The model of ``ignore``: names and positions dropped, '*'/'**' drop the variadics,
    a position among the surplus varargs becomes NULL, a name is ignored wherever it is."""
    params = list(signature.parameters.values())
    positional = [p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    names = {item for item in ignore if isinstance(item, str)}
    positions = {item for item in ignore if isinstance(item, int)}
    names |= {positional[i] for i in positions if i < len(positional)}
    out = {}
    for param in params:
        if param.name not in arguments:
            continue
        value = arguments[param.name]
        if param.kind is P.VAR_POSITIONAL:
            if "*" in ignore:
                continue
            start = len(positional)
            value = tuple(NULL if start + i in positions else v for i, v in enumerate(value))
        elif param.kind is P.VAR_KEYWORD:
            if "**" in ignore:
                continue
            value = {k: v for k, v in value.items() if k not in names}
        elif param.name in names:
            continue
        out[param.name] = value
    return out


def plan_key(plan, args, kwds):
    try:
        return plan(args, kwds)
    except TypeError:
        return TypeError


PROPERTY_SETTINGS = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_same_binding_same_key(data):
    signature = data.draw(signatures())
    plan = plan_call(function_with(signature))
    first, second = data.draw(valid_calls(signature)), data.draw(valid_calls(signature))
    bound_first, bound_second = binding(signature, *first), binding(signature, *second)
    assert bound_first is not None and bound_second is not None
    assert (plan(*first) == plan(*second)) == (bound_first == bound_second)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_same_binding_same_key_with_ignore(data):
    signature = data.draw(signatures())
    ignore = data.draw(ignores(signature))
    plan = plan_call(function_with(signature), ignore)
    first, second = data.draw(valid_calls(signature)), data.draw(valid_calls(signature))
    model_first = without_ignored(signature, binding(signature, *first), ignore)
    model_second = without_ignored(signature, binding(signature, *second), ignore)
    assert (plan(*first) == plan(*second)) == (model_first == model_second)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_rejected_calls_never_get_a_valid_key(data):
    signature = data.draw(signatures())
    ignore = data.draw(st.one_of(st.just(()), ignores(signature)))
    plan = plan_call(function_with(signature), ignore)
    valid = data.draw(valid_calls(signature))
    other = data.draw(st.one_of(calls(signature), rejected_calls(signature)))
    assume(binding(signature, *other) is None)
    assert plan_key(plan, *other) is TypeError or plan_key(plan, *other) != plan(*valid)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_fast_arity_agrees_with_binding(data):
    signature = data.draw(signatures())
    plan = plan_call(function_with(signature))
    assume(plan.fast_arity >= 0)
    args = tuple(data.draw(VALUES) for _ in range(plan.fast_arity))
    assume(binding(signature, args, {}) is not None)
    assert plan(args, {}) is args
    assert plan._bind(args, {}) == args
