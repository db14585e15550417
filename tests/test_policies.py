"""Eviction policies (klepto._policies): one contract for every class, then each rule
checked against a small reference model written here (spec section 6.3).

The contract is a mixin run once per policy class, as cachetools tests all its caches. The
state machines drive a policy the way the memoizer does (insert after a miss or load, touch
on a hit, victims while the cache is over ``maxsize``) and compare every answer with the
model.
"""

from __future__ import annotations

import pickle
import random

import dill
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from klepto._policies import (
    LFUPolicy,
    LRUPolicy,
    MRUPolicy,
    NoPolicy,
    Policy,
    RRPolicy,
    UnboundedPolicy,
    get_policy,
    register_policy,
)

MACHINE_SETTINGS = settings(
    derandomize=True,
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- driving a policy the way the memoizer does --------------------------------------------


def hit(policy: Policy, key) -> None:
    """What the memoizer does on a hit (a key unknown to the policy is inserted)."""
    if policy.tracks_hits:
        try:
            policy.touch(key)
        except KeyError:
            policy.insert(key)


def store(policy: Policy, cache: dict, key) -> None:
    """A miss or a load: the key enters the cache, then the policy hears of it."""
    cache[key] = key
    policy.insert(key)


def drain(policy: Policy, cache: dict, limit: int = 1000) -> list:
    """Ask for victims until the policy has none, removing each from ``cache``."""
    evicted = []
    for _ in range(limit):
        victims = policy.victims(cache)
        if not victims:
            return evicted
        for victim in victims:
            assert victim in cache, f"victim {victim!r} is not in the cache"
            del cache[victim]
        evicted += victims
    raise AssertionError("the policy never ran out of victims")


def filled(policy: Policy, keys) -> dict:
    cache: dict = {}
    for key in keys:
        store(policy, cache, key)
    return cache


# --- the contract, run for every policy class -----------------------------------------------


class PolicyContract:
    """Behaviour every policy shares; subclasses set ``policy_class`` and ``bounded``."""

    policy_class: type[Policy] = Policy
    bounded = True
    maxsize: int | None = 5

    def make(self, maxsize=None) -> Policy:
        return self.policy_class(self.maxsize if maxsize is None else maxsize)

    def test_registered_under_its_name(self):
        policy = get_policy(self.policy_class.name, self.maxsize)
        assert type(policy) is self.policy_class
        assert policy.maxsize == self.maxsize

    def test_repr_names_class_and_size(self):
        text = repr(self.make())
        assert self.policy_class.__name__ in text
        assert repr(self.maxsize) in text

    def test_is_a_policy(self):
        assert isinstance(self.make(), Policy)
        assert isinstance(self.policy_class.tracks_hits, bool)

    def test_empty_policy_has_no_victims(self):
        assert self.make().victims({}) == []

    def test_victims_is_a_list_of_cache_keys(self):
        policy = self.make()
        cache = filled(policy, range(8))
        victims = policy.victims(cache)
        assert isinstance(victims, list)
        assert set(victims) <= set(cache)
        assert len(set(victims)) == len(victims)
        assert bool(victims) is self.bounded

    def test_every_key_is_evicted_at_most_once(self):
        policy = self.make()
        cache = filled(policy, range(8))
        evicted = drain(policy, cache)
        assert len(evicted) == len(set(evicted))
        assert set(evicted) | set(cache) == set(range(8))

    def test_draining_empties_all_but_the_newest(self):
        policy = self.make()
        cache = filled(policy, range(8))
        drain(policy, cache)
        if not self.bounded:
            assert len(cache) == 8
        elif isinstance(policy, MRUPolicy):
            assert list(cache) == [7]  # the newest key is never the MRU victim
        else:
            assert cache == {}

    def test_storing_a_key_again_tracks_it_once(self):
        policy = self.make()
        cache = filled(policy, [1, 2, 1, 3, 1])
        evicted = drain(policy, cache)
        assert len(evicted) == len(set(evicted))

    def test_removed_key_is_never_a_victim(self):
        policy = self.make()
        cache = filled(policy, range(6))
        del cache[2]
        policy.remove(2)
        policy.remove("never seen")  # unknown keys are ignored
        assert 2 not in drain(policy, cache)

    def test_clear_forgets_everything(self):
        policy = self.make()
        cache = filled(policy, range(6))
        policy.clear()
        cache.clear()
        assert policy.victims(cache) == []
        cache = filled(policy, ["a", "b", "c"])
        assert set(drain(policy, cache)) <= {"a", "b", "c"}

    def test_hit_on_unknown_key_tracks_it(self):
        policy = self.make()
        cache = filled(policy, range(3))
        cache["late"] = "late"  # entered behind the policy's back (a bulk load)
        hit(policy, "late")
        evicted = drain(policy, cache)
        if self.bounded and not isinstance(policy, MRUPolicy):
            assert "late" in evicted

    def test_keys_loaded_behind_its_back_can_be_evicted(self):
        # A seeded cache or a bulk load(): keys the policy never heard of.
        policy = self.make()
        cache = {("seed", i): i for i in range(5)}
        store(policy, cache, "new")
        evicted = drain(policy, cache)
        if self.bounded:
            assert {("seed", i) for i in range(5)} & set(evicted)
            assert set(evicted) | set(cache) == {*(("seed", i) for i in range(5)), "new"}

    def test_keys_deleted_behind_its_back_are_forgotten(self):
        policy = self.make()
        cache = filled(policy, range(6))
        for key in (0, 1, 2):
            del cache[key]
        evicted = drain(policy, cache)
        assert not {0, 1, 2} & set(evicted)

    def test_pickles_with_pickle_and_dill(self):
        for dumps, loads in ((pickle.dumps, pickle.loads), (dill.dumps, dill.loads)):
            policy = self.make()
            cache = filled(policy, range(6))
            hit(policy, 2)
            copy = loads(dumps(policy))
            assert type(copy) is type(policy)
            assert copy.maxsize == policy.maxsize
            if isinstance(policy, RRPolicy):
                random.seed(7)
                expected = drain(policy, dict(cache))
                random.seed(7)
                assert drain(copy, dict(cache)) == expected
            else:
                assert drain(copy, dict(cache)) == drain(policy, dict(cache))


class TestLRUContract(PolicyContract):
    policy_class = LRUPolicy


class TestMRUContract(PolicyContract):
    policy_class = MRUPolicy


class TestLFUContract(PolicyContract):
    policy_class = LFUPolicy


class TestRRContract(PolicyContract):
    policy_class = RRPolicy


class TestUnboundedContract(PolicyContract):
    policy_class = UnboundedPolicy
    bounded = False
    maxsize = None


class TestNoPolicyContract(PolicyContract):
    policy_class = NoPolicy
    bounded = False
    maxsize = 0


# --- the registry ---------------------------------------------------------------------------


def test_every_classic_policy_is_registered():
    expected = {
        "lru": LRUPolicy,
        "mru": MRUPolicy,
        "lfu": LFUPolicy,
        "rr": RRPolicy,
        "inf": UnboundedPolicy,
        "no": NoPolicy,
    }
    for name, cls in expected.items():
        assert type(get_policy(name, 3)) is cls


def test_unknown_policy_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown policy 'fifo'"):
        get_policy("fifo", 3)


def test_register_policy(monkeypatch):
    from klepto import _policies

    monkeypatch.setattr(_policies, "_POLICIES", dict(_policies._POLICIES))

    class FIFOPolicy(LRUPolicy):
        name = "fifo"
        tracks_hits = False

    register_policy("fifo", FIFOPolicy)
    assert type(get_policy("fifo", 2)) is FIFOPolicy
    with pytest.raises(ValueError, match="already registered"):
        register_policy("fifo", LRUPolicy)
    register_policy("fifo", LRUPolicy, replace=True)
    assert type(get_policy("fifo", 2)) is LRUPolicy


def test_options_reach_the_policy():
    choices = []
    policy = get_policy("rr", 2, choice=lambda keys: choices.append(list(keys)) or keys[0])
    cache = filled(policy, "abc")
    assert policy.victims(cache) == ["a"]
    assert choices == [["a", "b", "c"]]


# --- examples straight from the spec --------------------------------------------------------


def run_calls(policy: Policy, maxsize: int, calls) -> dict:
    """The memoizer's algorithm over ``calls`` (each a key), with this policy."""
    cache: dict = {}
    for key in calls:
        if key in cache:
            hit(policy, key)
            continue
        store(policy, cache, key)
        while len(cache) > maxsize:
            for victim in policy.victims(cache) or [next(iter(cache))]:
                cache.pop(victim, None)
    return cache


def test_mru_example_from_the_spec():
    assert set(run_calls(MRUPolicy(3), 3, [1, 2, 3, 2, 4])) == {1, 3, 4}


def test_lru_evicts_the_least_recently_used():
    assert set(run_calls(LRUPolicy(3), 3, [1, 2, 3, 1, 4])) == {1, 3, 4}


@pytest.mark.parametrize(("maxsize", "batch"), [(1, 2), (5, 2), (19, 2), (20, 2), (30, 3)])
def test_lfu_batch_size(maxsize, batch):
    policy = LFUPolicy(maxsize)
    cache = filled(policy, range(maxsize + 1))
    assert len(policy.victims(cache)) == batch


def test_lfu_evicts_smallest_counts_ties_earliest_counted():
    policy = LFUPolicy(4)
    cache = filled(policy, ["a", "b", "c", "d"])
    for key in ["a", "a", "c", "d"]:
        hit(policy, key)
    store(policy, cache, "e")  # counts: a3 b1 c2 d2 e1
    assert policy.victims(cache) == ["b", "e"]  # the new key itself can go


def test_lfu_forgets_the_counts_of_evicted_keys():
    policy = LFUPolicy(3)
    cache = filled(policy, ["a", "b", "c"])
    for _ in range(5):
        hit(policy, "a")
    store(policy, cache, "d")
    assert policy.victims(cache) == ["b", "c"]
    del cache["b"], cache["c"]
    store(policy, cache, "b")  # back with a fresh count of 1, counted after d
    store(policy, cache, "e")
    assert policy.victims(cache) == ["d", "b"]


def test_rr_uses_the_global_random_stream_once_per_overflow():
    policy = RRPolicy(3)
    cache = filled(policy, range(4))
    random.seed(1234)
    state = random.getstate()
    [victim] = policy.victims(cache)
    after = random.getstate()
    random.setstate(state)
    random.choice(range(4))  # one draw over as many keys as the cache holds
    assert random.getstate() == after
    assert victim in range(4)


def test_rr_draws_over_the_whole_cache_after_a_bulk_load():
    sizes = []
    policy = RRPolicy(2, choice=lambda keys: sizes.append(len(keys)) or keys[-1])
    cache = {i: i for i in range(6)}  # never inserted
    store(policy, cache, "new")
    policy.victims(cache)
    assert sizes == [7]


# --- state machines against reference models ------------------------------------------------

KEYS = st.integers(min_value=0, max_value=9)


class PolicyMachine(RuleBasedStateMachine):
    """Drives a policy like the memoizer does and compares it with ``model_*`` methods.

    ``self.order`` is the model's list of tracked keys (meaning depends on the policy);
    keys may also enter the cache behind the policy's back (a bulk load), which the model
    adopts when it is asked for victims, as the policies do.
    """

    policy_class: type[Policy] = Policy

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict = {}
        self.order: list = []

    @initialize(maxsize=st.integers(min_value=1, max_value=6))
    def start(self, maxsize):
        self.maxsize = maxsize
        self.policy = self.make_policy(maxsize)

    def make_policy(self, maxsize):
        return self.policy_class(maxsize)

    # --- what the memoizer does -----------------------------------------------------------
    @rule(key=KEYS)
    def call(self, key):
        if key in self.cache:
            hit(self.policy, key)
            self.model_hit(key)
            return
        store(self.policy, self.cache, key)
        self.model_insert(key)
        while len(self.cache) > self.maxsize:
            self.overflow()

    @rule(key=KEYS)
    def bulk_load(self, key):
        self.cache.setdefault(("loaded", key), key)

    @rule(key=KEYS)
    def call_loaded(self, key):
        if ("loaded", key) in self.cache:  # a hit on a key the policy never heard of
            hit(self.policy, ("loaded", key))
            self.model_hit(("loaded", key))

    @precondition(lambda self: self.cache)
    @rule(data=st.data())
    def remove(self, data):
        key = data.draw(st.sampled_from(sorted(self.cache, key=repr)))
        del self.cache[key]
        self.policy.remove(key)
        if key in self.order:
            self.model_remove(key)

    @rule()
    def clear(self):
        self.cache.clear()
        self.policy.clear()
        self.order.clear()

    def overflow(self):
        self.model_adopt()
        expected = self.model_victims()
        victims = self.policy.victims(self.cache)
        assert victims, "a cache over maxsize always has a victim"
        self.check_victims(victims, expected)
        for victim in victims:
            del self.cache[victim]
            if victim in self.order:
                self.model_remove(victim)

    def check_victims(self, victims, expected):
        assert victims == expected

    @invariant()
    def tracks_no_key_outside_the_cache(self):
        assert set(self.order) <= set(self.cache)

    # --- the model ------------------------------------------------------------------------
    def model_adopt(self):
        """Forget keys the cache lost, adopt keys it gained, when the counts differ."""
        if len(self.order) == len(self.cache):
            return
        self.order = [k for k in self.cache if k not in self.order] + [
            k for k in self.order if k in self.cache
        ]

    def model_hit(self, key):
        self.model_insert(key)

    def model_insert(self, key):
        if key in self.order:
            self.order.remove(key)
        self.order.append(key)

    def model_remove(self, key):
        self.order.remove(key)

    def model_victims(self):
        raise NotImplementedError


class LRUMachine(PolicyMachine):
    """LRU: the least recently touched or inserted key (``order`` oldest first)."""

    policy_class = LRUPolicy

    def model_victims(self):
        return [self.order.pop(0)] if self.order else []


class MRUMachine(PolicyMachine):
    """MRU (spec 6.3): the most recently used key *before* the one that overflowed."""

    policy_class = MRUPolicy

    def model_victims(self):
        if len(self.order) < 2:
            return []
        return [self.order.pop(-2)]


class LFUMachine(PolicyMachine):
    """LFU: ``max(2, maxsize // 10)`` smallest counts, ties to the earliest counted.

    ``order`` lists keys in the order they were first counted; ``counts`` their uses.
    Adopted (bulk-loaded) keys count 0 and come first.
    """

    policy_class = LFUPolicy

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict = {}

    def model_adopt(self):
        if len(self.order) == len(self.cache):
            return
        adopted = [k for k in self.cache if k not in self.counts]
        self.order = adopted + [k for k in self.order if k in self.cache]
        self.counts = {k: self.counts.get(k, 0) for k in self.order}

    def model_hit(self, key):
        self.model_insert(key)

    def model_insert(self, key):
        if key not in self.counts:
            self.order.append(key)
            self.counts[key] = 0
        self.counts[key] += 1

    def model_remove(self, key):
        self.order.remove(key)
        del self.counts[key]

    def clear(self):
        super().clear()
        self.counts.clear()

    def model_victims(self):
        batch = max(2, self.maxsize // 10)
        ranked = sorted(range(len(self.order)), key=lambda i: (self.counts[self.order[i]], i))
        chosen = [self.order[i] for i in ranked[:batch]]
        for key in chosen:
            self.model_remove(key)
        return chosen


class RRMachine(PolicyMachine):
    """RR with an injected seeded ``choice``: one draw per overflow, over the whole cache,
    and the victim is always a key the cache holds."""

    policy_class = RRPolicy

    def make_policy(self, maxsize):
        self.draws: list = []
        rng = random.Random(42)

        def choice(keys):
            self.draws.append(sorted(keys, key=repr))
            return rng.choice(keys)

        return RRPolicy(maxsize, choice=choice)

    def model_hit(self, key):
        """RR keeps no recency: a hit changes nothing."""

    def model_victims(self):
        return None  # any current key

    def check_victims(self, victims, expected):
        assert len(self.draws) == 1, "exactly one draw per overflow"
        assert self.draws.pop() == sorted(self.cache, key=repr), "the draw is over the cache"
        assert len(victims) == 1
        assert victims[0] in self.cache


class RRGlobalRandomMachine(RRMachine):
    """RR with the global ``random``: each overflow consumes exactly one ``choice`` draw."""

    def make_policy(self, maxsize):
        random.seed(maxsize)
        return RRPolicy(maxsize)

    def overflow(self):
        size = len(self.cache)
        state = random.getstate()
        victims = self.policy.victims(self.cache)
        after = random.getstate()
        random.setstate(state)
        random.choice(range(size))
        assert random.getstate() == after, "one random.choice over the whole cache"
        assert len(victims) == 1
        assert victims[0] in self.cache
        del self.cache[victims[0]]
        if victims[0] in self.order:
            self.model_remove(victims[0])


def _machine_test(machine: type[RuleBasedStateMachine]) -> type:
    test_case = machine.TestCase
    test_case.settings = MACHINE_SETTINGS
    return test_case


TestLRUMachine = _machine_test(LRUMachine)
TestMRUMachine = _machine_test(MRUMachine)
TestLFUMachine = _machine_test(LFUMachine)
TestRRMachine = _machine_test(RRMachine)
TestRRGlobalRandomMachine = _machine_test(RRGlobalRandomMachine)


@pytest.mark.parametrize("private_generator", [True, False])
def test_rr_draws_what_random_choice_would(monkeypatch, private_generator):
    """The victim is the key ``random.choice`` would pick from the same state, whether the
    global generator's ``_randbelow`` is there to call (CPython) or not."""
    from klepto import _policies

    if not private_generator:
        monkeypatch.delattr(random, "_inst")
        monkeypatch.setattr(_policies, "_randbelow", _policies._global_randbelow())
    keys = [f"k{i}" for i in range(50)]
    policy = RRPolicy(10)
    for key in keys:
        policy.insert(key)
    random.seed(7)
    expected = random.choice(list(policy._keys))
    random.seed(7)
    assert policy.victims(keys) == [expected]
    assert expected not in policy._keys and len(policy._keys) == 49
