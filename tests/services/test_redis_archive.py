"""redis_archive on the real Redis server: layout, settings, native TTLs, pipelines, atomic
add/pop, locks, errors, pickling and store detection."""

from __future__ import annotations

import builtins
import math
import pickle
import threading
import time

import pytest

from klepto import stores
from klepto.archives import cache, redis_archive
from klepto.errors import CorruptArchiveError, MissingDependencyError, StoreConnectionError
from tests.services._stores import location, make_shared, worker_context

pytestmark = pytest.mark.services


@pytest.fixture
def archive(request):
    return make_shared("redis", request)


def _names(archive):
    return sorted(archive.client.scan_iter(match=archive._layout.prefix + b"*"))


def test_entries_are_namespaced_hashes(archive):
    archive[("a", 1)] = [1, 2]
    prefix = archive._layout.prefix
    names = _names(archive)
    assert names[-1] == prefix + b"settings"
    entry = names[0]
    assert len(entry) == len(prefix) + 32
    assert set(archive.client.hkeys(entry)) == {b"k", b"v"}
    assert archive.client.hget(entry, "v")[:2] == b"KV"  # a sealed envelope, not a raw pickle


def test_damaged_value_is_detected(archive):
    archive["x"] = "a value long enough"
    entry = _names(archive)[0]
    blob = bytearray(archive.client.hget(entry, "v"))
    blob[-3] ^= 0x40
    archive.client.hset(entry, "v", bytes(blob))
    with pytest.raises(CorruptArchiveError):
        archive["x"]


def test_settings_are_recorded_and_honoured(request):
    where = location("redis", request)
    made = redis_archive(where, cached=False, codec="zlib")
    assert made.settings()["codec"] == "zlib"
    assert redis_archive(where, cached=False).settings()["codec"] == "zlib"
    with pytest.raises(ValueError, match="codec"):
        redis_archive(where, cached=False, codec="lzma")


def test_names_and_urls(redis_url, request):
    where = location("redis", request)
    name = where.rsplit("=", 1)[1]
    by_url = redis_archive(where, cached=False)
    by_name = redis_archive(name, url=redis_url, cached=False)
    by_url["k"] = 1
    assert by_name["k"] == 1
    assert by_url.name == by_name.name == f"{redis_url}?name={name}"
    with pytest.raises(ValueError, match="invalid redis_archive name"):
        redis_archive("a:b", url=redis_url, cached=False)


def test_expiry_is_a_native_ttl(archive):
    archive.set("short", 1, expire=0.3)
    archive.set("forever", 2, expire=math.inf)
    archive["plain"] = 3
    ttl = archive.client.pttl(archive._entry("short"))
    assert 0 < ttl <= 300
    assert archive.client.pttl(archive._entry("plain")) == -1
    value, deadline = archive.get("short", expire_time=True)
    assert value == 1 and deadline == pytest.approx(time.time() + 0.3, abs=0.2)
    archive["short"] = 4  # a plain write makes it permanent again
    assert archive.client.pttl(archive._entry("short")) == -1
    archive.set("short", 5, expire=0.2)
    time.sleep(0.4)
    assert "short" not in archive
    assert archive.client.exists(archive._entry("short")) == 0  # Redis removed it itself
    assert sorted(archive) == ["forever", "plain"]


def test_expire_default_and_cache_front(request):
    where = location("redis", request)
    front = redis_archive(where, expire=60)
    front["a"] = 1
    front.dump()
    raw = front.archive
    assert 0 < raw.client.pttl(raw._entry("a")) <= 60_000
    again = redis_archive(where)
    again.load("a")
    assert again["a"] == 1
    assert again._deadlines["a"] == pytest.approx(time.time() + 60, abs=5)


def test_bulk_operations_are_pipelined(archive, monkeypatch):
    sent = []
    original = archive.client.pipeline

    def counting(*args, **kwds):
        pipe = original(*args, **kwds)
        execute = pipe.execute

        def counted(*a, **k):
            sent.append(len(pipe.command_stack))
            return execute(*a, **k)

        pipe.execute = counted
        return pipe

    monkeypatch.setattr(archive.client, "pipeline", counting)
    front = cache(archive=archive)
    front.update({i: i for i in range(300)})
    front.dump()
    assert len(sent) == 1  # one MULTI/EXEC round trip for 300 entries
    again = cache(archive=archive)
    again.load(*range(300), "missing")
    assert len(sent) == 2 and len(again) == 300


def test_add_and_pop_are_atomic_across_clients(archive):
    results = []
    barrier = threading.Barrier(8)

    def racer(n):
        other = pickle.loads(pickle.dumps(archive))  # its own client and connections
        barrier.wait()
        results.append(other.add("k", n))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    popped = []
    barrier.reset()

    def popper():
        barrier.wait()
        popped.append(archive.pop("k", None))

    threads = [threading.Thread(target=popper) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(popped, key=repr).count(None) == 7
    assert archive.setdefault("s", 1) == 1 and archive.setdefault("s", 2) == 1


def test_lock_excludes_other_clients_and_expires(request):
    archive = make_shared("redis", request, lock_expire=0.3)
    other = pickle.loads(pickle.dumps(archive))
    entered = threading.Event()
    with archive.lock("k"):
        time.sleep(0.5)  # longer than lock_expire: renewal keeps it held

        def contender():
            with other.lock("k"):
                entered.set()

        thread = threading.Thread(target=contender)
        thread.start()
        assert not entered.wait(0.3)
    assert entered.wait(5)
    thread.join()
    # A holder that stops renewing (a dead process) loses the lock after lock_expire.
    archive.client.set(archive._layout.lock(archive._codec.digest("dead")), b"token", px=300)
    started = time.monotonic()
    with archive.lock("dead"):
        pass
    assert 0.1 < time.monotonic() - started < 3
    assert archive.locks_processes


def test_lock_release_keeps_another_holders_lock(archive):
    name = archive._layout.lock(archive._codec.digest("k"))
    with archive.lock("k"):
        archive.client.set(name, b"somebody else")  # as if ours expired and they took it
    assert archive.client.get(name) == b"somebody else"


def test_pickles_by_reference_to_another_process(archive):
    archive.update({i: i for i in range(500)})
    blob = pickle.dumps(archive)
    assert len(blob) < 1000  # the location and settings, not the entries
    context = worker_context()
    with context.Pool(2) as pool:
        from tests.services._workers import read_keys, write_range

        pids = pool.starmap(write_range, [(archive, 1000, 50), (archive, 2000, 50)])
        seen = pool.starmap(read_keys, [(archive, [1000, 2049])])
    assert len(set(pids)) >= 1
    assert seen == [{1000: 1000 * 1000, 2049: 2049 * 2049}]
    assert len(archive) == 600


def test_connection_errors_are_clear(request):
    request.getfixturevalue("redis_url")
    with pytest.raises(StoreConnectionError, match="unreachable") as caught:
        redis_archive("memo", url="redis://:secret@127.0.0.1:1/0", cached=False)
    assert "secret" not in str(caught.value) and "redis://:***@127.0.0.1:1/0" in str(caught.value)
    with pytest.raises(StoreConnectionError, match="database does not exist"):
        redis_archive("memo", url="redis://127.0.0.1:6379/999", cached=False)
    with pytest.raises(StoreConnectionError, match="refused the credentials"):
        redis_archive("memo", url="redis://nobody:secret@127.0.0.1:6379/0", cached=False)


def test_size_limit_is_not_supported(redis_url, request):
    with pytest.raises(TypeError, match="size_limit"):
        redis_archive(location("redis", request), size_limit=1000)


def test_missing_client_names_the_extra(monkeypatch, redis_url):
    real_import = builtins.__import__

    def no_redis(name, *args, **kwds):
        if name == "redis" or name.startswith("redis."):
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwds)

    monkeypatch.delitem(__import__("sys").modules, "redis")
    monkeypatch.setattr(builtins, "__import__", no_redis)
    with pytest.raises(MissingDependencyError, match=r"klepto\[redis\]"):
        redis_archive("memo", url=redis_url, cached=False)


def test_store_detection(archive):
    archive["x"] = 1
    where = archive.name
    assert stores.detect(where) == "redis"
    with stores.open_store(where) as store:
        assert store.get("x") == 1
        assert store.info()["entries"] == 1
        assert store.verify()["ok"]
