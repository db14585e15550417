"""Coroutine functions: the wrapper awaits the result before storing it (real event loops)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

import klepto
from klepto import safe
from klepto.archives import dict_archive, dir_archive


def test_the_result_is_cached_never_the_coroutine():
    calls = []

    @klepto.lru_cache()
    async def double(x):
        calls.append(x)
        await asyncio.sleep(0)
        return 2 * x

    assert inspect.iscoroutinefunction(double)

    async def main():
        return [await double(1), await double(1), await double(2)]

    assert asyncio.run(main()) == [2, 2, 4]
    assert calls == [1, 2]
    assert double.info() == klepto.tools.CacheInfo(1, 2, 0, 100, 2)
    assert dict(double.__cache__()) == {(1,): 2, (2,): 4}
    assert double.lookup(1) == 2


def test_a_second_event_loop_is_served_from_the_cache():
    @klepto.inf_cache()
    async def square(x):
        return x * x

    assert asyncio.run(square(3)) == 9
    assert asyncio.run(square(3)) == 9
    assert square.info().hit == 1


def test_concurrent_awaiters_compute_once():
    calls = []

    @klepto.lru_cache()
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        return [x]

    async def main():
        return await asyncio.gather(*(slow(5) for _ in range(10)))

    assert asyncio.run(main()) == [[5]] * 10
    assert calls == [5]
    info = slow.info()
    assert (info.hit, info.miss) == (9, 1)


def test_awaiters_in_different_threads_and_loops_compute_once():
    calls = []
    start = threading.Barrier(4)

    @klepto.lru_cache()
    async def slow(x):
        calls.append(x)
        await asyncio.sleep(0.1)
        return x + 1

    results = []

    def run():
        start.wait(timeout=30)
        results.append(asyncio.run(slow(1)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [2, 2, 2, 2]
    assert calls == [1]


def test_a_failed_leader_hands_over_to_a_waiter():
    attempts = []

    @klepto.lru_cache()
    async def flaky(x):
        attempts.append(x)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise RuntimeError("once")
        return x

    async def main():
        return await asyncio.gather(*(flaky(1) for _ in range(3)), return_exceptions=True)

    results = asyncio.run(main())
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert results.count(1) == 2
    assert len(attempts) == 2


def test_a_cancelled_waiter_does_not_disturb_the_leader():
    @klepto.lru_cache()
    async def slow(x):
        await asyncio.sleep(0.05)
        return x

    async def main():
        leader = asyncio.create_task(slow(1))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(slow(1))
        await asyncio.sleep(0.01)
        waiter.cancel()
        return await leader, await asyncio.gather(waiter, return_exceptions=True)

    result, (cancelled,) = asyncio.run(main())
    assert result == 1 and isinstance(cancelled, asyncio.CancelledError)
    assert slow.info().miss == 1


def test_methods_are_cached_per_instance():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        @klepto.lru_cache(ignore="self")
        async def shared(self, x):
            return x * self.scale

        @klepto.lru_cache()
        async def own(self, x):
            return x * self.scale

    a, b = Model(2), Model(3)

    async def main():
        return [await a.own(1), await b.own(1), await a.shared(1), await b.shared(1)]

    assert asyncio.run(main()) == [2, 3, 2, 2]


def test_archive_io_runs_off_the_event_loop(tmp_path):
    store = dir_archive(str(tmp_path / "store"), cached=False)
    threads = []
    original = type(store)._get

    def spying_get(self, key):
        threads.append(threading.current_thread() is threading.main_thread())
        return original(self, key)

    type(store)._get = spying_get
    try:

        @klepto.lru_cache(cache=store)
        async def f(x):
            return x

        async def main():
            return [await f(1), await f(1)]

        assert asyncio.run(main()) == [1, 1]
    finally:
        type(store)._get = original
    assert threads and not any(threads)  # every read happened in a worker thread


def test_loads_from_the_archive_behind_a_front(tmp_path):
    store = dict_archive("behind", cached=False)
    store[(4,)] = 16

    @klepto.lru_cache()
    async def square(x):
        raise AssertionError("served from the archive")

    square.archive(store)
    assert asyncio.run(square(4)) == 16
    assert square.info().load == 1


def test_no_cache_writes_through_and_counts_like_sync():
    store = dict_archive("through", cached=False)

    @klepto.no_cache(cache=store)
    async def inc(x):
        return x + 1

    async def main():
        return [await inc(1), await inc(1)]

    assert asyncio.run(main()) == [2, 2]
    info = inc.info()
    assert (info.hit, info.miss, info.load) == (0, 1, 1)
    assert dict(store.items()) == {(1,): 2}


def test_safe_variant_calls_uncached_when_no_key_can_be_made():
    @safe.lru_cache()
    async def describe(obj):
        return "ok"

    async def main():
        return await describe(lambda: 0), await describe(lambda: 0)

    assert asyncio.run(main()) == ("ok", "ok")
    assert describe.info().miss == 2 and describe.info().size == 0


def test_unhashable_arguments_and_ttl():
    now = [0.0]

    @klepto.lru_cache(ttl=10, timer=lambda: now[0])
    async def total(values):
        return sum(values)

    assert asyncio.run(total([1, 2])) == 3
    assert asyncio.run(total([1, 2])) == 3
    now[0] = 11
    assert asyncio.run(total([1, 2])) == 3
    assert total.info().miss == 2 and total.info().hit == 1


def test_unfreezable_arguments_raise():
    @klepto.lru_cache()
    async def f(x):
        return 1

    with pytest.raises(TypeError, match="cannot cache"):
        asyncio.run(f(object.__new__(_Unhashable)))


class _Unhashable:
    __hash__ = None  # type: ignore[assignment]
