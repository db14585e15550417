"""The decorator contract: every test runs over all twelve decorators (spec sections 6 and 8).

``klepto.{no,inf,lfu,lru,mru,rr}_cache`` and their ``klepto.safe`` variants share one
constructor, one set of wrapper attributes and one per-call algorithm; they differ in the
eviction rule, in whether results are kept at all (``no_cache``) and, for the safe variants,
in the default keymap and in falling back to an uncached call when no key can be made.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import dill
import numpy as np
import pytest

import klepto
from klepto import safe
from klepto.archives import cache as cache_front
from klepto.archives import dict_archive
from klepto.keymaps import hashmap, keymap, stablemap, stringmap
from klepto.tools import CacheInfo

CLASSIC = (
    klepto.no_cache,
    klepto.inf_cache,
    klepto.lfu_cache,
    klepto.lru_cache,
    klepto.mru_cache,
    klepto.rr_cache,
)
SAFE = (
    safe.no_cache,
    safe.inf_cache,
    safe.lfu_cache,
    safe.lru_cache,
    safe.mru_cache,
    safe.rr_cache,
)
ALL = CLASSIC + SAFE
BOUNDED = tuple(d for d in ALL if d.__name__ not in ("no_cache", "inf_cache"))
CACHING = tuple(d for d in ALL if d.__name__ != "no_cache")
ROOT = Path(klepto.__file__).resolve().parent.parent


def label(decorator) -> str:
    return f"safe.{decorator.__name__}" if is_safe(decorator) else decorator.__name__


def is_safe(decorator) -> bool:
    return decorator.__module__ == "klepto.safe"


def keeps_results(decorator) -> bool:
    return decorator.__name__ != "no_cache"


def family(decorator):
    return safe if is_safe(decorator) else klepto


every = pytest.mark.parametrize("decorator", ALL, ids=label)
bounded = pytest.mark.parametrize("decorator", BOUNDED, ids=label)
caching = pytest.mark.parametrize("decorator", CACHING, ids=label)
classic_only = pytest.mark.parametrize("decorator", CLASSIC, ids=label)
safe_only = pytest.mark.parametrize("decorator", SAFE, ids=label)


def counting(decorator, *args, **kwds):
    """Decorate ``f(x, y=0) -> (x, y)`` and record every real call in ``f.calls``."""
    calls = []

    @decorator(*args, **kwds)
    def f(x, y=0):
        calls.append((x, y))
        return (x, y)

    f.calls = calls
    return f


def hmm(info) -> tuple:
    """``(hit, miss, load)`` of a CacheInfo."""
    return (info.hit, info.miss, info.load)


# Module-level decorated functions: pickled by reference (spec 6.2, test_pickles).
@klepto.lru_cache()
def module_squared(x):
    return x**2


@safe.lru_cache()
def module_safe_squared(x):
    return x**2


# --- construction ---------------------------------------------------------------------------


@every
def test_decorators_are_classes(decorator):
    assert isinstance(decorator, type)
    instance = decorator()
    assert isinstance(instance, decorator)
    assert callable(instance)


@every
def test_state_defaults(decorator):
    state = decorator().__state__
    assert set(state) == {
        "maxsize",
        "cache",
        "keymap",
        "ignore",
        "roundargs",
        "tol",
        "deep",
        "purge",
    }
    expected_maxsize = {"no_cache": 0, "inf_cache": None}.get(decorator.__name__, 100)
    assert state["maxsize"] == expected_maxsize
    assert state["purge"] is (decorator.__name__ == "no_cache")
    assert isinstance(state["cache"], cache_front)
    assert not state["cache"].archived()
    assert state["cache"] == {}
    assert state["ignore"] == ()
    assert state["roundargs"] is None
    assert state["tol"] is None
    assert state["deep"] is False
    if is_safe(decorator):
        assert type(state["keymap"]) is stringmap
        assert state["keymap"].flat is False
    else:
        assert type(state["keymap"]) is stablemap


@every
def test_forced_maxsize_and_purge(decorator):
    state = decorator(7, purge=not decorator().__state__["purge"]).__state__
    if decorator.__name__ == "no_cache":
        assert (state["maxsize"], state["purge"]) == (0, True)
    elif decorator.__name__ == "inf_cache":
        assert (state["maxsize"], state["purge"]) == (None, False)
    else:
        assert (state["maxsize"], state["purge"]) == (7, True)


@bounded
def test_maxsize_by_position_and_keyword(decorator):
    assert decorator(7).__state__["maxsize"] == 7
    assert decorator(maxsize=7).__state__["maxsize"] == 7
    assert decorator(1).__state__["maxsize"] == 1


@bounded
@pytest.mark.parametrize(("maxsize", "target"), [(0, "no_cache"), (None, "inf_cache")])
def test_maxsize_redirects(decorator, maxsize, target):
    expected = getattr(family(decorator), target)
    km = keymap()
    for instance in (decorator(maxsize, keymap=km), decorator(maxsize=maxsize, keymap=km)):
        assert type(instance) is expected
        assert instance.__state__["keymap"] is km
        f = counting(type(instance))
        assert f(1) == (1, 0)
        assert f(1) == (1, 0)
    assert hmm(instance(lambda x: x).info()) == (0, 0, 0)


@bounded
@pytest.mark.parametrize(
    ("maxsize", "error"), [(-1, ValueError), ("3", TypeError), (2.5, TypeError)]
)
def test_bad_maxsize(decorator, maxsize, error):
    with pytest.raises(error, match="maxsize"):
        decorator(maxsize)


@every
def test_each_instance_gets_its_own_cache(decorator):
    assert decorator().__state__["cache"] is not decorator().__state__["cache"]


@caching
def test_plain_dict_cache_is_copied_into_a_front(decorator):
    seed = {(1, 0): "seeded"}
    f = counting(decorator, cache=seed)
    front = f.__cache__()
    assert isinstance(front, cache_front)
    assert front is not seed
    if not is_safe(decorator):  # stablemap keys: the bound call
        assert f(1) == "seeded"
        assert f.calls == []
    seed.clear()
    assert len(front) >= 1


@every
def test_archives_are_used_as_given(decorator):
    front = dict_archive("front")
    raw = dict_archive("raw", cached=False)
    assert decorator(cache=front).__state__["cache"] is front
    assert decorator(cache=raw).__state__["cache"] is raw


@every
def test_one_instance_shares_one_cache(decorator):
    memo = decorator()

    @memo
    def double(x):
        return 2 * x

    @memo
    def triple(x):
        return 3 * x

    assert double.__cache__() is triple.__cache__()
    assert double(1) == 2
    # Keys do not include the function: a caching decorator answers from double's result.
    assert triple(1) == (2 if keeps_results(decorator) else 3)


@caching
def test_cache_shared_on_purpose(decorator):
    f = counting(decorator)
    g = counting(decorator, cache=f.__cache__())
    f(4)
    assert g(4) == (4, 0)
    assert g.calls == []


@every
def test_decorator_reduce_and_pickle(decorator):
    instance = decorator(5, ignore=("y",), tol=2, deep=True)
    cls, args = instance.__reduce__()
    state = instance.__state__
    assert cls is type(instance)
    expected = (state["maxsize"], state["cache"], state["keymap"], ("y",), 2, True, state["purge"])
    assert args == expected
    for dumps, loads in ((pickle.dumps, pickle.loads), (dill.dumps, dill.loads)):
        copy = loads(dumps(instance))
        assert type(copy) is type(instance)
        for name in ("maxsize", "ignore", "tol", "deep", "purge"):
            assert copy.__state__[name] == state[name]
        assert type(copy.__state__["keymap"]) is type(state["keymap"])
        assert copy.__state__["roundargs"].tol == 2
        assert copy(lambda x: x)(1.234) == 1.234


@every
def test_get_binds_the_decorator_like_classic(decorator):
    instance = decorator()
    bound = instance.__get__(object(), object)
    assert isinstance(bound, functools.partial)
    assert bound.func == instance.__call__


@every
def test_repr_names_the_decorator(decorator):
    assert decorator.__name__ in repr(decorator())


@every
def test_non_callable_is_refused(decorator):
    with pytest.raises(TypeError, match="non-callable"):
        decorator()(42)


# --- the wrapper's attributes ---------------------------------------------------------------


@every
def test_functools_metadata(decorator):
    def original(x):
        """Docstring."""
        return x

    original.custom = "kept"
    f = decorator()(original)
    assert f.__name__ == "original"
    assert f.__qualname__ == original.__qualname__
    assert f.__doc__ == "Docstring."
    assert f.__module__ == __name__
    assert f.__wrapped__ is original
    assert f.custom == "kept"


@every
def test_info_and_aliases(decorator):
    f = counting(decorator)
    f(1), f(1), f(2)
    info = f.info()
    assert type(info) is CacheInfo
    assert f.cache_info() == info
    assert info.hit + info.miss + info.load == 3
    if keeps_results(decorator):
        assert hmm(info) == (1, 2, 0)
        assert info.size == 2
    else:
        assert hmm(info) == (0, 3, 0)
        assert info.size == 0
    assert info.maxsize == decorator().__state__["maxsize"]


@every
def test_clear_and_keepstats(decorator):
    f = counting(decorator)
    f(1), f(1)
    before = f.info()
    f.clear(keepstats=True)
    assert hmm(f.info()) == hmm(before)
    assert f.info().size == 0
    f.cache_clear()
    assert hmm(f.info()) == (0, 0, 0)
    f(1)
    assert hmm(f.info()) == (0, 1, 0)  # cleared: computed again


@every
def test_cache_mask_and_map(decorator):
    km = hashmap(algorithm="md5")
    memo = decorator(keymap=km, ignore="y")
    f = memo(lambda x, y=0: x)
    assert f.__cache__() is memo.__state__["cache"]
    assert isinstance(f.__cache__(), cache_front)
    assert f.__mask__() == ("y",)
    assert f.__map__() is km


@every
def test_key(decorator):
    f = counting(decorator)
    if is_safe(decorator):
        assert f.key(1, 2) == "((), {'y': 2, 'x': 1})"
        assert f.key(1) == f.key(1, 0) == "((), {'y': 0, 'x': 1})"
    else:
        assert f.key(1, 2) == (1, 2)
        assert f.key(1) == f.key(x=1) == f.key(1, y=0) == (1, 0)
    assert f.calls == []
    assert hmm(f.info()) == (0, 0, 0)


@every
def test_lookup(decorator):
    f = counting(decorator)
    with pytest.raises(KeyError):
        f.lookup(1, 2)
    f(1, 2)
    if keeps_results(decorator):
        assert f.lookup(1, 2) == (1, 2)
    else:
        with pytest.raises(KeyError):
            f.lookup(1, 2)  # no_cache keeps nothing in memory
    if keeps_results(decorator) and not is_safe(decorator):
        assert f.lookup(1, y=2) == f.lookup(x=1, y=2) == (1, 2)  # bound: however spelled
    assert hmm(f.info()) == (0, 1, 0)  # lookups count nothing


@every
def test_load_dump_archived_archive(decorator):
    f = counting(decorator, cache=dict_archive("first"))
    assert f.archived() is True
    f(1)
    backend = f.__cache__().archive
    f.dump()
    assert len(backend) == 1
    f.clear()
    assert len(f.__cache__()) == 0
    f.load()
    assert len(f.__cache__()) == 1
    f.clear()

    other = dict_archive("second", cached=False)
    f.archive(other)
    assert f.__cache__().archive is other
    fronted = dict_archive("third")
    f.archive(fronted)
    assert f.__cache__().archive is fronted.archive  # a front gives its backend

    f.archived(False)
    assert f.archived() is False
    f.archived(True)
    assert f.archived() is True
    assert f.__cache__().archive is fronted.archive


@every
def test_archived_without_archive(decorator):
    f = counting(decorator)
    assert f.archived() is False
    with pytest.raises(ValueError, match="no valid archive"):
        f.archived(True)


@every
def test_raw_archive_cannot_take_a_new_archive(decorator):
    f = counting(decorator, cache=dict_archive("raw", cached=False))
    assert f.archived() is False
    with pytest.raises(ValueError, match="cannot set new archive"):
        f.archive(dict_archive("other", cached=False))


@every
def test_persisted_results_are_found_lazily(decorator):
    """A new function over the same archive loads per key on a miss (spec 6.5)."""
    backend = dict_archive("shared", cached=False)
    first = counting(decorator, cache=dict_archive("shared"))
    first.archive(backend)
    first(1), first(2)
    first.dump()
    second = counting(decorator, cache=dict_archive("again"))
    second.archive(backend)
    assert second(1) == (1, 0)
    assert second.calls == []
    assert hmm(second.info()) == (0, 0, 1)


# --- purge, raw archives and fronts ---------------------------------------------------------


@bounded
def test_purge_with_archive_flushes_everything(decorator):
    f = counting(decorator, maxsize=3, cache=dict_archive("purge"), purge=True)
    for x in range(4):
        f(x)
    assert len(f.__cache__()) == 0
    assert dict(f.__cache__().archive) == {f.key(x): (x, 0) for x in range(4)}


@bounded
def test_purge_without_archive_evicts(decorator):
    f = counting(decorator, maxsize=3, purge=True)
    for x in range(10):
        f(x)
    size = len(f.__cache__())
    if decorator.__name__ == "lfu_cache":
        assert 1 <= size <= 3  # lfu evicts a batch
    else:
        assert size == 3


@bounded
def test_no_purge_writes_victims_behind(decorator):
    f = counting(decorator, maxsize=3, cache=dict_archive("behind"), purge=False)
    for x in range(10):
        f(x)
    memory, archive = f.__cache__(), f.__cache__().archive
    assert len(memory) <= 3
    assert set(memory).isdisjoint(archive)  # only victims were written
    assert {*memory, *archive} == {f.key(x) for x in range(10)}
    for x in range(10):
        assert f(x) == (x, 0)
    assert len(f.calls) == 10  # evicted results come back from the archive


@every
def test_raw_archive_as_cache(decorator):
    raw = dict_archive("raw", cached=False)
    f = counting(decorator, maxsize=2 if decorator in BOUNDED else None, cache=raw)
    for x in range(4):
        f(x)
    assert f.info().size == len(raw)
    if decorator in BOUNDED:
        assert len(raw) <= 2  # evictions delete from the backend
    else:
        assert len(raw) == 4  # every miss went straight to the backend (no_cache too)
    f(3)
    f.clear()
    assert len(raw) == 0 or decorator.__name__ == "no_cache"


@caching
def test_front_keeps_misses_in_memory(decorator):
    f = counting(decorator, cache=dict_archive("front"))
    f(1), f(2)
    assert len(f.__cache__()) == 2
    assert len(f.__cache__().archive) == 0
    f.clear()
    f.load()
    assert len(f.__cache__()) == 0  # nothing was dumped


def test_no_cache_writes_through_and_loads():
    for decorator in (klepto.no_cache, safe.no_cache):
        f = counting(decorator, cache=dict_archive("through"))
        assert f(1) == (1, 0)
        assert len(f.__cache__()) == 0
        assert len(f.__cache__().archive) == 1
        assert f(1) == (1, 0)
        assert hmm(f.info()) == (0, 1, 1)
        assert f.info().size == 0
        assert f.calls == [(1, 0)]


def test_inf_cache_never_evicts():
    f = counting(klepto.inf_cache, cache=dict_archive("inf"))
    for x in range(300):
        f(x)
    assert len(f.__cache__()) == 300
    assert len(f.__cache__().archive) == 0


# --- ignore, rounding -----------------------------------------------------------------------


def variadic(decorator, **kwds):
    calls = []

    @decorator(**kwds)
    def f(x, y, *args, **extra):
        calls.append(1)
        return (x, y, args, extra)

    f.calls = calls
    return f


@every
@pytest.mark.parametrize(
    ("ignore", "first", "second"),
    [
        ("y", ((1, 2), {}), ((1, 3), {})),
        (1, ((1, 2), {}), ((1, 3), {})),
        (("y",), ((1, 2), {}), ((1,), {"y": 3})),
        ("*", ((1, 2, 3), {}), ((1, 2, 4, 5), {})),
        ("**", ((1, 2), {"a": 1}), ((1, 2), {"b": 2})),
        (("x", "**"), ((1, 2), {"a": 1}), ((5, 2), {})),
    ],
)
def test_ignore_shares_keys(decorator, ignore, first, second):
    if is_safe(decorator) and (first[1], second[1]) == ({}, {"y": 3}):
        # Classic keys are text of the normalised kwds, whose order follows the spelling.
        pytest.skip("safe variants key f(1, 2) and f(1, y=3) apart (classic key order)")
    f = variadic(decorator, ignore=ignore)
    assert f.key(*first[0], **first[1]) == f.key(*second[0], **second[1])
    result = f(*first[0], **first[1])
    again = f(*second[0], **second[1])
    if keeps_results(decorator):
        assert again == result  # ignored arguments do not matter: one shared result
        assert len(f.calls) == 1
    else:
        assert len(f.calls) == 2


@every
def test_ignore_keeps_other_arguments_apart(decorator):
    f = variadic(decorator, ignore=("y", "*"))
    assert f.key(1, 2) != f.key(2, 2)
    assert f.key(1, 2, a=1) != f.key(1, 2, a=2)


@every
def test_ignored_vararg_position(decorator):
    f = variadic(decorator, ignore=3)
    assert f.key(1, 2, 3, 4) == f.key(1, 2, 3, 5)
    assert f.key(1, 2, 3, 4) != f.key(1, 2, 4, 4)
    assert f.key(1, 2, 3) != f.key(1, 2, 3, 4)


@every
def test_tol_rounds_the_key_only(decorator):
    calls = []

    @decorator(tol=1)
    def f(x):
        calls.append(x)
        return x

    assert f.key(1.04) == f.key(1.01)
    assert f.key(1.04) != f.key(1.06)
    assert f(1.04) == 1.04  # the function gets the original argument
    expected = 1.04 if keeps_results(decorator) else 1.01
    assert f(1.01) == expected
    assert f.key([1.04]) != f.key([1.01])  # simple rounding: top-level floats only


@every
def test_deep_rounds_nested_floats(decorator):
    seen = []

    @decorator(tol=1, deep=True)
    def f(values):
        seen.append(values)
        return sum(values)

    original = [1.04, 2.0]
    assert f.key(original) == f.key([1.01, 2.0])
    assert f(original) == pytest.approx(3.04)
    assert seen[0] is original


# --- methods --------------------------------------------------------------------------------


def make_class(decorator):
    class Box:
        def __init__(self, value):
            self.value = value

        @decorator()
        def own(self, x):
            return (self.value, x)

        @decorator(ignore="self")
        def shared(self, x):
            return (self.value, x)

        @classmethod
        @decorator()
        def cm_inner(cls, x):
            return (cls.__name__, x)

        @decorator()
        @classmethod
        def cm_outer(cls, x):
            return (cls.__name__, x)

        @staticmethod
        @decorator()
        def sm_inner(x):
            return ("static", x)

        @decorator()
        @staticmethod
        def sm_outer(x):
            return ("static", x)

    class Crate(Box):
        pass

    return Box, Crate


@every
def test_method_without_ignore_is_per_instance(decorator):
    Box, _ = make_class(decorator)
    one, two = Box(1), Box(2)
    assert one.own(5) == (1, 5)
    assert two.own(5) == (2, 5)
    assert one.own(5) == (1, 5)
    assert Box.own(two, x=5) == (2, 5)
    info = Box.own.info()
    assert info.hit + info.miss == 4
    assert one.own.info() == info  # attribute access through the bound method


@every
def test_method_ignoring_self_shares_between_instances(decorator):
    Box, _ = make_class(decorator)
    one, two = Box(1), Box(2)
    assert one.shared(5) == (1, 5)
    assert two.shared(5) == ((1, 5) if keeps_results(decorator) else (2, 5))
    assert Box.shared.key(one, 5) == Box.shared.key(two, 5)
    if keeps_results(decorator):
        assert one.shared.lookup(two, 5) == (1, 5)
        assert hmm(Box.shared.info()) == (1, 1, 0)


@every
def test_classmethods(decorator):
    Box, Crate = make_class(decorator)
    for name in ("cm_inner", "cm_outer"):
        assert getattr(Box, name)(3) == ("Box", 3)
        assert getattr(Crate, name)(3) == ("Crate", 3)  # cls is part of the key
        assert getattr(Box(0), name)(3) == ("Box", 3)
        info = getattr(Box, name).info()
        assert info.hit + info.miss == 3
        if keeps_results(decorator) and not is_safe(decorator):
            assert hmm(info) == (1, 2, 0)


@every
def test_staticmethods(decorator):
    Box, _ = make_class(decorator)
    for name in ("sm_inner", "sm_outer"):
        assert getattr(Box, name)(3) == ("static", 3)
        assert getattr(Box(0), name)(3) == ("static", 3)
        expected = (1, 1, 0) if keeps_results(decorator) else (0, 2, 0)
        assert hmm(getattr(Box, name).info()) == expected


@every
def test_parameters_named_self_and_cls_by_keyword(decorator):
    """Classic issue 84: a keyword named like the keymap's own parameter."""

    @decorator()
    def f(self, cls, x=0):
        return (self, cls, x)

    assert f(self=1, cls=2) == (1, 2, 0)
    assert f(1, 2) == (1, 2, 0)
    assert f(cls=2, self=1, x=0) == (1, 2, 0)
    assert f.key(self=1, cls=2) == f.key(1, 2)
    if not keeps_results(decorator):
        assert hmm(f.info()) == (0, 3, 0)
    elif is_safe(decorator):
        assert hmm(f.info()) == (1, 2, 0)  # classic text keys follow the keyword order
    else:
        assert hmm(f.info()) == (2, 1, 0)


@every
def test_method_self_passed_by_keyword(decorator):
    Box, _ = make_class(decorator)
    box = Box(7)
    assert Box.own(self=box, x=1) == (7, 1)
    assert Box.shared(self=box, x=1) == (7, 1)


@every
def test_method_with_a_cls_parameter(decorator):
    class Registry:
        @decorator(ignore="self")
        def lookup_type(self, cls, name="x"):
            return f"{cls.__name__}.{name}"

    registry = Registry()
    assert registry.lookup_type(cls=int) == "int.x"
    assert registry.lookup_type(int, name="y") == "int.y"
    assert registry.lookup_type(cls=str) == "str.x"


# --- errors ---------------------------------------------------------------------------------


@every
def test_exceptions_propagate_and_are_not_cached(decorator):
    calls = []

    @decorator()
    def f(x):
        calls.append(x)
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x

    for _ in range(2):
        with pytest.raises(ValueError, match="negative: -1"):
            f(-1)
    assert calls == [-1, -1]
    assert hmm(f.info()) == (0, 0, 0)
    assert f.info().size == 0
    assert f(1) == 1


@every
def test_invalid_calls_raise_like_the_function(decorator):
    f = counting(decorator)
    f(2)
    with pytest.raises(TypeError):
        f(1, x=2)  # multiple values for x: never answered from the cache
    with pytest.raises(TypeError):
        f(1, z=3)
    with pytest.raises(TypeError):
        f()
    assert f.calls == [(2, 0)]


class NoHash:
    """Has ``__eq__`` and no ``__hash__``: truly unhashable, and no frozen form either."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, NoHash) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


@classic_only
def test_unencodable_argument_is_a_clear_type_error(decorator):
    calls = []

    @decorator()
    def f(x, item):
        calls.append(item)
        return item

    with pytest.raises(TypeError, match=r"cannot cache .*f.*argument 'item'.*NoHash"):
        f(1, NoHash(1))
    with pytest.raises(TypeError, match=r"argument 'item'.*NoHash"):
        f(1, item=[NoHash(1)])
    with pytest.raises(TypeError, match="NoHash"):
        f.key(1, NoHash(1))
    assert calls == []
    assert hmm(f.info()) == (0, 0, 0)


@safe_only
@pytest.mark.parametrize(
    "options",
    [
        {"keymap": keymap(flat=False)},  # key (args, kwds): a dict inside, unhashable
        {"keymap": hashmap(flat=False)},  # builtin hash of an unhashable key raises
        {"keymap": stablemap(), "tol": 1, "deep": True},  # deep rounding of a generator fails
        {},  # default stringmap: the repr of NoHash names an address
    ],
    ids=["keymap-nonflat", "hashmap-nonflat", "deep-round", "stringmap"],
)
def test_safe_variants_fall_back(decorator, options):
    calls = []

    @decorator(**options)
    def f(item):
        calls.append(item)
        return "done"

    argument = (x for x in [1.5]) if options.get("deep") else NoHash(1)
    for _ in range(2):
        assert f(argument) == "done"
    assert len(calls) == 2  # called every time, never cached
    assert hmm(f.info()) == (0, 2, 0)
    assert f.info().size == 0


@safe_only
def test_safe_text_keys_that_would_mislead_are_not_cached(decorator):
    """Text keys naming an address or an elided summary are not trusted; others are."""

    @decorator()
    def describe(value):
        return repr(value)[:20]

    looping = [1]
    looping.append(looping)
    for misleading in (looping, object(), np.arange(5000)):
        describe(misleading)
        describe(misleading)
    assert describe.info().size == 0
    assert hmm(describe.info()) == (0, 6, 0)
    describe("Loading...")
    describe("Loading...")  # a plain "..." in a str argument is cached as usual
    if keeps_results(decorator):
        assert hmm(describe.info()) == (1, 7, 0)


@safe_only
def test_safe_variants_do_not_cover_the_function(decorator):
    @decorator()
    def f(x):
        raise KeyError(x)

    with pytest.raises(KeyError):
        f(1)


@dataclasses.dataclass
class Point:
    x: float
    tags: list


@classic_only
@pytest.mark.parametrize(
    ("argument", "equal", "different"),
    [
        ([1, 2], [1, 2], [2, 1]),
        ({"a": [1], "b": 2}, {"b": 2, "a": [1]}, {"a": [1], "b": 3}),
        ({1, 2}, {2, 1}, {1, 3}),
        ([{1: [2]}], [{1: [2]}], [{1: [3]}]),
        (Point(1.0, ["a"]), Point(1.0, ["a"]), Point(1.0, ["b"])),
    ],
    ids=["list", "dict", "set", "nested", "dataclass"],
)
def test_unhashable_arguments_work_with_default_keymap(decorator, argument, equal, different):
    seen = []

    @decorator()
    def f(value):
        seen.append(value)
        return repr(value)

    assert f(argument) == repr(argument)
    assert seen[0] is argument  # the function gets the original object
    assert f(equal) == repr(argument if keeps_results(decorator) else equal)
    assert f(different) == repr(different)
    expected = (1, 2, 0) if keeps_results(decorator) else (0, 3, 0)
    assert hmm(f.info()) == expected


@every
def test_numpy_arrays(decorator):
    @decorator()
    def total(array, scale=1):
        return float(array.sum()) * scale

    small = np.arange(6).reshape(2, 3)
    assert total(small) == 15.0
    assert total(small.copy()) == 15.0
    assert total(small.astype(float)) == 15.0
    assert total(small.T) == 15.0
    big = np.arange(5000)
    changed = big.copy()
    changed[2500] = 0
    assert total(big) == float(big.sum())
    assert total(changed) == float(changed.sum())  # differs in the middle only
    assert total(big, scale=2) == 2 * float(big.sum())
    if keeps_results(decorator) and not is_safe(decorator):
        # Only the copy is the same key: dtype and shape are part of an array's key.
        assert total.info().hit == 1


# --- E3 (reliability.md): awkward arguments, never a wrong result ---------------------------


@every
def test_e3_lambdas(decorator):
    @decorator()
    def call(g):
        return g()

    results = [call(lambda: 1), call(lambda: 2), call(lambda: 3)]
    assert results == [1, 2, 3]


@every
def test_e3_generators(decorator):
    @decorator()
    def first(iterator):
        return next(iterator)

    def numbers(start):
        yield start

    assert [first(numbers(i)) for i in range(5)] == [0, 1, 2, 3, 4]


@every
def test_e3_locks(decorator):
    @decorator()
    def locked(lock):
        with lock:
            return lock.locked()

    lock = threading.Lock()
    assert locked(lock) is True
    assert locked(lock) is True
    assert locked(threading.Lock()) is True


@every
def test_e3_open_files(decorator, tmp_path):
    @decorator()
    def first_line(handle):
        handle.seek(0)
        return handle.readline()

    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.txt").write_text("beta\n")
    with open(tmp_path / "a.txt") as a, open(tmp_path / "b.txt") as b:
        assert first_line(a) == "alpha\n"
        assert first_line(b) == "beta\n"
        assert first_line(a) == "alpha\n"


@every
def test_e3_object_whose_eq_raises(decorator):
    class Touchy:
        def __eq__(self, other):
            raise RuntimeError("do not compare me")

        def __hash__(self):
            return 7

    @decorator()
    def ident(value):
        return id(value)

    first, second = Touchy(), Touchy()
    assert ident(first) == id(first)
    assert ident(first) == id(first)
    try:
        result = ident(second)
    except RuntimeError:
        return  # the comparison the hash collision forced: an error, not a wrong result
    assert result == id(second)


@every
def test_e3_nan(decorator):
    @decorator()
    def is_nan(x):
        return math.isnan(x)

    nan = float("nan")
    assert is_nan(nan) is True
    assert is_nan(nan) is True
    assert is_nan(float("nan")) is True
    assert is_nan(0.0) is False


@every
def test_e3_signed_zero_documented(decorator):
    """-0.0 == 0.0: like functools.lru_cache, the classic decorators give equal numbers
    one key; the safe variants key by text, where they differ."""

    @decorator()
    def sign(x):
        return math.copysign(1.0, x)

    assert sign(-0.0) == -1.0
    shared = keeps_results(decorator) and not is_safe(decorator)
    assert sign(0.0) == (-1.0 if shared else 1.0)
    assert (sign.key(-0.0) == sign.key(0.0)) is not is_safe(decorator)


@every
def test_e3_equal_numbers_documented(decorator):
    """1 == 1.0 == True share a key in the classic decorators (as in classic klepto and in a
    dict); the safe variants' text keys keep them apart."""

    @decorator()
    def kind(x):
        return type(x).__name__

    shared = kind.key(1) == kind.key(1.0) == kind.key(True)
    assert shared is not is_safe(decorator)
    assert kind(1) == "int"
    assert kind(1.0) == ("int" if keeps_results(decorator) and not is_safe(decorator) else "float")


@every
def test_e3_digits_never_run_together(decorator):
    @decorator()
    def join(x, y):
        return x * 100 + y

    assert join(1, 23) == 123
    assert join(12, 3) == 1203
    assert join.key(1, 23) != join.key(12, 3)


@every
def test_e3_list_is_not_a_tuple(decorator):
    @decorator()
    def kind(value):
        return type(value).__name__

    assert kind([1, 2]) == "list"
    assert kind((1, 2)) == "tuple"
    assert kind([1, 2]) == "list"
    assert kind.key([1, 2]) != kind.key((1, 2))


# --- pickling -------------------------------------------------------------------------------


@pytest.mark.parametrize("function", [module_squared, module_safe_squared], ids=["lru", "safe"])
def test_module_level_functions_pickle(function):
    function(4)
    for dumps, loads in ((pickle.dumps, pickle.loads), (dill.dumps, dill.loads)):
        copy = loads(dumps(function))
        assert copy.lookup(4) == 16
        assert copy.__cache__() == function.__cache__()
        assert copy(4) == 16


PICKLE_SCRIPT = textwrap.dedent(
    """
    import dill
    import klepto
    from klepto import safe

    DECORATORS = [
        klepto.no_cache, klepto.inf_cache, klepto.lfu_cache, klepto.lru_cache,
        klepto.mru_cache, klepto.rr_cache, safe.no_cache, safe.inf_cache,
        safe.lfu_cache, safe.lru_cache, safe.mru_cache, safe.rr_cache,
    ]

    for decorator in DECORATORS:
        @decorator(tol=3)
        def squared(x):
            return x ** 2

        squared(2)
        squared(4)
        _s = dill.loads(dill.dumps(squared))  # by value: defined in __main__
        keeps = decorator.__name__ != "no_cache"
        if keeps:
            assert _s.lookup(4) == 16, decorator
        assert squared.__cache__() == _s.__cache__(), decorator
        before = _s.info()
        assert _s(4) == 16
        assert _s.info().hit == before.hit + keeps, (decorator, before, _s.info())
        assert _s(5) == 25
        if keeps:
            assert _s.lookup(5) == 25
            assert len(_s.__cache__()) == _s.info().size == 3
            assert len(squared.__cache__()) == 2  # the copy has its own cache
        copy = dill.loads(dill.dumps(decorator(5, ignore="x")))
        assert copy.__state__["ignore"] == ("x",)
        print("ok", decorator.__module__, decorator.__name__)
    """
)


def test_dill_pickles_functions_defined_in_main(tmp_path):
    script = tmp_path / "pickles.py"
    script.write_text(PICKLE_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == 12
