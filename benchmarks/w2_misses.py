"""W2: the in-memory miss path with eviction. maxsize=1000, keys from 100k (about 1% hits)."""

from __future__ import annotations

import random
import time

from benchmarks._harness import Result, per_op
from benchmarks._peers import optional

NAME = "W2"
TITLE = "in-memory misses with eviction, per policy"


def _square(x):
    return x * x


def _time_calls(f, keys, repeat):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for k in keys:
            f(k)
        best = min(best, time.perf_counter() - started)
    started = time.perf_counter()
    for k in keys:
        _square(k)
    return max(best - (time.perf_counter() - started), 0.0)


def _klepto(policy):
    import klepto

    return getattr(klepto, f"{policy}_cache")(maxsize=1000)(_square)


def _cachetools(cachetools, policy):
    caches = {"lru": cachetools.LRUCache, "lfu": cachetools.LFUCache, "rr": cachetools.RRCache}
    return cachetools.cached(caches[policy](1000))(_square)


def run(quick: bool = False) -> list[Result]:
    ncalls = 20_000 if quick else 100_000
    rng = random.Random(42)
    keys = [rng.randrange(100_000) for _ in range(ncalls)]
    cachetools = optional("cachetools")
    results = []
    for policy in ("lru", "lfu", "rr", "mru"):
        peer_policy = "lru" if policy == "mru" else policy
        peer = f"cachetools {peer_policy}" if cachetools is not None else None
        # Fresh decorators for every repeat would also time set-up; one warm pass is enough.
        seconds = _time_calls(_klepto(policy), keys, 1)
        results.append(
            Result(
                NAME,
                f"miss {policy}",
                f"klepto {policy}",
                per_op(seconds, ncalls) * 1e6,
                "us/call",
                peer,
                1.0,
            )
        )
        if cachetools is not None and policy != "mru":
            seconds = _time_calls(_cachetools(cachetools, policy), keys, 1)
            results.append(
                Result(NAME, f"miss {policy}", peer, per_op(seconds, ncalls) * 1e6, "us/call")
            )
    for r in results:  # mru is compared with cachetools' lru
        if r.metric == "miss mru" and r.peer:
            r.peer = "cachetools lru"
            r.metric = "miss mru"
    _alias_mru_peer(results)
    return results


def _alias_mru_peer(results):
    for r in list(results):
        if r.impl == "cachetools lru":
            results.append(Result(NAME, "miss mru", r.impl, r.value, r.unit))
