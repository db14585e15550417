"""Threads hammering one memoized function (issue 2: a lock per wrapper, function outside it).

Every assertion is about counts and results, never timings: however the threads interleave,
hit + miss + load equals the number of calls, every result is right, the cache is within
``maxsize`` once the threads are done, and the user function never runs under the lock.
"""

from __future__ import annotations

import random
import sys
import threading

import pytest

import klepto
from klepto import safe
from klepto.archives import dict_archive

DECORATORS = (
    klepto.no_cache,
    klepto.inf_cache,
    klepto.lfu_cache,
    klepto.lru_cache,
    klepto.mru_cache,
    klepto.rr_cache,
    safe.no_cache,
    safe.inf_cache,
    safe.lfu_cache,
    safe.lru_cache,
    safe.mru_cache,
    safe.rr_cache,
)
THREADS = 6
CALLS = 500  # per thread: 3000 racing calls per test, 96 tests (the suite stays under 10 min)
MAXSIZE = 8
DOMAIN = 40
JOIN_TIMEOUT = 60  # seconds; only a deadlock comes near it


def label(decorator) -> str:
    prefix = "safe." if decorator.__module__ == "klepto.safe" else ""
    return prefix + decorator.__name__


every = pytest.mark.parametrize("decorator", DECORATORS, ids=label)

# Cache setups: name -> (kwds for the decorator, built fresh per test).
SETUPS = {
    "memory": dict,
    "front-purge": lambda: {"cache": dict_archive("front"), "purge": True},
    "front-behind": lambda: {"cache": dict_archive("front"), "purge": False},
    "raw": lambda: {"cache": dict_archive("raw", cached=False)},
}


@pytest.fixture(autouse=True)
def frequent_switches():
    """Make the interpreter switch threads as often as it can: more interleavings."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_threads(target, count=THREADS):
    """Start ``count`` threads on ``target(index)`` together; return their exceptions."""
    barrier = threading.Barrier(count)
    errors = []

    def body(index):
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            target(index)
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return errors


def bounded(decorator) -> bool:
    return decorator.__name__ not in ("inf_cache", "no_cache")


@every
@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_hammering_one_function(decorator, setup):
    real_calls = []

    @decorator(maxsize=MAXSIZE, **SETUPS[setup]())
    def square(x):
        real_calls.append(x)  # list.append is atomic
        return x * x

    wrong = []

    def work(index):
        rng = random.Random(index)
        for _ in range(CALLS):
            x = rng.randrange(DOMAIN)
            if square(x) != x * x:
                wrong.append(x)

    errors = run_threads(work)
    assert errors == []
    assert wrong == []
    info = square.info()
    assert info.hit + info.miss + info.load == THREADS * CALLS
    assert info.miss == len(real_calls)  # every miss ran the function, nothing else did
    cache = square.__cache__()
    assert info.size == len(cache)
    if bounded(decorator):
        assert len(cache) <= MAXSIZE
    if decorator.__name__ == "no_cache":
        assert info.hit == 0
    # Still consistent afterwards: a fresh key is a miss, then a hit.
    before = square.info()
    assert square(DOMAIN + 1) == (DOMAIN + 1) ** 2
    assert square.info().miss + square.info().load == before.miss + before.load + 1


@every
def test_hashable_and_unhashable_calls_interleaved(decorator):
    @decorator(maxsize=MAXSIZE)
    def total(values):
        return sum(values) if isinstance(values, list) else values

    wrong = []

    def work(index):
        rng = random.Random(100 + index)
        for _ in range(CALLS):
            x = rng.randrange(DOMAIN)
            argument = [x, 1] if rng.random() < 0.5 else x
            expected = x + 1 if isinstance(argument, list) else x
            if total(argument) != expected:
                wrong.append(argument)

    assert run_threads(work) == []
    assert wrong == []
    info = total.info()
    assert info.hit + info.miss + info.load == THREADS * CALLS
    if bounded(decorator):
        assert len(total.__cache__()) <= MAXSIZE


@every
def test_clear_while_hammering(decorator):
    @decorator(maxsize=MAXSIZE)
    def double(x):
        return 2 * x

    wrong = []

    def work(index):
        rng = random.Random(200 + index)
        for step in range(CALLS):
            if index == 0 and step % 50 == 0:
                double.clear(keepstats=step % 100 == 0)
                continue
            x = rng.randrange(DOMAIN)
            if double(x) != 2 * x:
                wrong.append(x)

    assert run_threads(work) == []
    assert wrong == []
    if bounded(decorator):
        assert len(double.__cache__()) <= MAXSIZE
    assert double.info().size == len(double.__cache__())


@every
def test_function_runs_outside_the_lock(decorator):
    """One thread, so a held lock can only be the wrapper's own, around the call."""
    seen_locked = []

    @decorator(maxsize=2)
    def probe(x):
        seen_locked.append(probe.__memo__.lock.locked())
        return x

    for x in [1, 2, 1, 3, 4, [5], [5], 1]:  # misses, hits, evictions, the unhashable path
        probe(x)
    assert seen_locked
    assert not any(seen_locked)


@every
def test_two_calls_run_the_function_at_the_same_time(decorator):
    """Both threads must be inside the function together, or the barrier breaks."""
    inside = threading.Barrier(2)

    @decorator()
    def meet(x):
        inside.wait(timeout=JOIN_TIMEOUT)
        return x

    assert run_threads(meet, count=2) == []
    assert meet.info().miss == 2


@every
def test_recursion_through_another_thread_does_not_deadlock(decorator):
    """f(n) asks a new thread for f(n - 1) and waits: the lock must not be held meanwhile."""

    @decorator()
    def depth(n):
        if n == 0:
            return 0
        answer = []
        helper = threading.Thread(target=lambda: answer.append(depth(n - 1)), daemon=True)
        helper.start()
        helper.join(JOIN_TIMEOUT)
        assert not helper.is_alive(), "deadlock: the helper thread never got the lock"
        return answer[0] + 1

    assert depth(5) == 5
    assert depth(5) == 5
    info = depth.info()
    if decorator.__name__ == "no_cache":
        assert (info.hit, info.miss) == (0, 12)
    else:
        assert (info.hit, info.miss) == (1, 6)


@every
def test_same_key_from_many_threads(decorator):
    """A key missed by several threads at once is computed by each, then served to all."""
    real_calls = []
    start = threading.Barrier(THREADS)

    @decorator(maxsize=MAXSIZE)
    def slow(x):
        real_calls.append(x)
        return x + 1

    def work(index):
        start.wait(timeout=JOIN_TIMEOUT)
        for _ in range(50):
            assert slow(7) == 8

    assert run_threads(work) == []
    info = slow.info()
    assert info.hit + info.miss + info.load == THREADS * 50
    assert info.miss == len(real_calls)
    if decorator.__name__ != "no_cache":
        assert 1 <= info.miss <= THREADS  # at most one miss per thread, then hits
        assert len(slow.__cache__()) == 1


@every
def test_two_functions_sharing_one_cache(decorator):
    """One decorator instance, two functions, one cache, two locks (spec 6.1)."""
    memo = decorator(maxsize=MAXSIZE)

    @memo
    def square(x):
        return x * x

    @memo
    def also_square(x):  # keys do not include the function: results must agree
        return x**2

    wrong = []

    def work(index):
        rng = random.Random(300 + index)
        for _ in range(CALLS):
            x = rng.randrange(DOMAIN)
            function = square if rng.random() < 0.5 else also_square
            if function(x) != x * x:
                wrong.append(x)

    assert run_threads(work) == []
    assert wrong == []
    total = sum(sum(f.info()[:3]) for f in (square, also_square))
    assert total == THREADS * CALLS
    if bounded(decorator):
        assert len(square.__cache__()) <= MAXSIZE
