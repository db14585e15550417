"""SQL archives as shared caches on the real PostgreSQL and MariaDB servers.

Pooling knobs, upserts under concurrent writers of the same keys, batched ``dump()`` and
``load()`` (round trips counted), cross-process locks, clear connection errors, and
reconnection after a restart of the real PostgreSQL server.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from klepto.archives import cache, sqltable_archive
from klepto.errors import StoreConnectionError
from tests.services._stores import make_shared, worker_context
from tests.services._workers import contend

pytestmark = pytest.mark.services

SQL_BACKENDS = ("postgresql", "mariadb")


def _statements(archive):
    """A list that collects every statement SQLAlchemy sends (writes go through it)."""
    sent = []
    event.listen(
        archive.engine,
        "before_cursor_execute",
        lambda conn, cursor, sql, params, context, many: sent.append((sql, many)),
    )
    return sent


def _count_fetches(archive, monkeypatch):
    """A list that collects every read (reads go to the driver directly)."""
    connector = archive._connector
    reads = []
    original = connector._fetch

    def counted(compiled, params, rows):
        reads.append(compiled.sql)
        return original(compiled, params, rows)

    monkeypatch.setattr(connector, "_fetch", counted)
    return reads


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_pool_knobs_reach_the_engine(backend, request):
    archive = make_shared(backend, request, pool_size=3, max_overflow=1, pool_recycle=600)
    pool = archive.engine.pool
    assert pool.size() == 3
    assert pool._max_overflow == 1
    assert pool._recycle == 600
    assert pool._pre_ping is True  # the default on servers: dead connections are replaced


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_dump_and_load_are_batched(backend, request, monkeypatch):
    archive = make_shared(backend, request)
    front = cache(archive=archive)
    front.update({i: "v" * 50 for i in range(1200)})
    sent = _statements(archive)
    front.dump()
    upserts = [sql for sql, _ in sent if sql.lstrip().upper().startswith("INSERT")]
    assert len(upserts) == 3  # 1200 rows: three batches of at most 500, not 1200 statements
    assert len(archive) == 1200
    again = cache(archive=archive)
    reads = _count_fetches(archive, monkeypatch)
    again.load(*range(1100), "missing")
    assert len(reads) == 3  # IN (...) batches of 500 keys
    assert len(again) == 1100 and again[7] == "v" * 50


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_concurrent_upserts_of_the_same_keys(backend, request):
    archive = make_shared(backend, request)
    context = worker_context()
    with context.Pool(8) as pool:
        seeds = pool.starmap(contend, [(archive, seed, 15) for seed in range(8)])
    assert seeds == list(range(8))  # no writer raised (deadlocks are retried, never seen)
    values = archive.__asdict__()
    assert sorted(k for k in values if isinstance(k, int)) == list(range(30))
    assert all(value[0] in range(8) for key, value in values.items() if isinstance(key, int))
    assert all(("once", r) in values for r in range(0, 15, 5))


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_lock_excludes_other_connections(backend, request):
    archive = make_shared(backend, request)
    other = sqltable_archive(archive.name.replace("***", ""), cached=False)
    assert archive.locks_processes and other.locks_processes
    entered = threading.Event()
    with archive.lock(("k", 1)):

        def contender():
            with other.lock(("k", 1)):
                entered.set()

        thread = threading.Thread(target=contender)
        thread.start()
        assert not entered.wait(0.5)  # held by another session: the contender waits
        with other.lock(("k", 2)):  # another key is free
            pass
    assert entered.wait(10)
    thread.join()


def test_lock_of_a_dead_holder_is_released(postgres_url, request):
    archive = make_shared("postgresql", request)
    context = multiprocessing.get_context("fork")
    holding = context.Event()

    def hold_forever():
        with archive.lock("k"):
            holding.set()
            time.sleep(60)

    child = context.Process(target=hold_forever)
    child.start()
    assert holding.wait(30)
    child.kill()
    child.join()
    started = time.monotonic()
    with archive.lock("k"):
        pass
    assert time.monotonic() - started < 5  # the server ended the dead session's locks


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://postgres:secret@127.0.0.1:1/test", "unreachable"),
        ("postgresql+psycopg://nobody_klepto:secret@127.0.0.1:5432/test", "credentials"),
        ("mysql+pymysql://root:wrong@127.0.0.1:3306/test", "credentials"),
        ("mysql+pymysql://root@127.0.0.1:1/test", "unreachable"),
    ],
)
def test_clear_errors(url, reason, request):
    request.getfixturevalue("postgres_url" if "postgresql" in url else "mariadb_url")
    with pytest.raises(StoreConnectionError) as caught:
        sqltable_archive(f"{url}?table=t", cached=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "secret" not in message and "wrong" not in message  # never the password
    assert sa.engine.make_url(url).render_as_string(hide_password=True) in message
    expected = {"unreachable": "unreachable", "credentials": "refused the credentials"}
    assert expected[reason] in message


@pytest.mark.parametrize("fixture", ["postgres_url", "mariadb_url"])
def test_missing_database_is_a_clear_error(fixture, request):
    url = sa.engine.make_url(request.getfixturevalue(fixture)).set(database="klepto_nosuchdb")
    text = url.render_as_string(hide_password=False)
    with pytest.raises(StoreConnectionError, match="the database does not exist") as caught:
        sqltable_archive(f"{text}?table=t", cached=False, create_database=False)
    assert url.render_as_string(hide_password=True) in str(caught.value)


def _pg_cluster() -> str:
    return os.listdir("/etc/postgresql")[0]


def _pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster(), "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _pg_ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            with engine.connect():
                engine.dispose()
                return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/etc/postgresql"), reason="no local PostgreSQL cluster")
def test_reconnects_after_server_restart(postgres_url, request):
    archive = make_shared("postgresql", request)
    front = cache(archive=archive)
    archive.update({i: i for i in range(100)})
    with archive.lock("warm"):  # a pooled lock connection, dead after the restart
        pass
    try:
        _pg_ctl("restart")
        _pg_ready(postgres_url)
        assert archive[5] == 5  # the dead read connection is replaced
        archive[200] = 200  # and the dead write connection
        front.load(*range(10))
        assert len(front) == 10
        assert archive.add(201, 1) is True
        with archive.lock("warm"):
            pass
        assert len(archive) == 102
        _pg_ctl("stop")
        with pytest.raises(StoreConnectionError, match="unreachable"):
            sqltable_archive(archive.name, cached=False)
    finally:
        _pg_ctl("start")  # leave the server running, whatever happened
        _pg_ready(postgres_url)
    assert archive[200] == 200
