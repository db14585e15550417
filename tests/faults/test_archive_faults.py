"""File, directory and SQL (SQLite; PostgreSQL under ``services``) archives under real
faults, through one harness: kill -9 during direct writes (A2), ``dump()`` (A3) and file
compaction; concurrent writer and reader processes (C1, C2, N=32 under ``full``); a writer
killed inside a transaction (C6).

Every check counts outcomes; none depends on timing. ``-m full`` (or ``-m faults``) runs
the campaign sizes of docs/reliability.rst.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest

from tests.faults import _archive_worker as worker
from tests.faults._harness import acked, dump_points, kill_after_acks, ops, replay, spawn

pytestmark = pytest.mark.faults

KILL_OPS = 300
STORES = ("file", "dir", "sql")
FULL = [pytest.mark.full, pytest.mark.slow]
_MISSING = "<absent>"


def location(store: str, folder: Path, name: str) -> str:
    if store == "sql":
        return f"sqlite:///{folder / name}.db?table=memo"
    return str(folder / (name + (".pkl" if store == "file" else "")))


def label(store: str) -> str:
    return "sqlite" if store == "sql" else store


def start(store: str, command: str, where: str, *args: object):
    return spawn("_archive_worker", store, command, where, *args)


def check_after_kill(store: str, where: str, before: dict, after: dict, atomic: bool) -> list:
    """Problems with the reopened archive, given the states before/after the in-flight step;
    ``atomic``: the in-flight step (a dump batch) must be all old or all new."""
    problems = []
    archive = worker.open_archive(store, where, cached=False)
    found = archive.__asdict__()
    if len(archive) != len(found):
        problems.append(f"len() says {len(archive)}, {len(found)} entries listed")
    for key in set(found) - set(before) - set(after):
        problems.append(f"phantom key {key!r}")
    for key in set(before) | set(after):
        allowed = {before.get(key, _MISSING), after.get(key, _MISSING)}
        if found.get(key, _MISSING) not in allowed:
            problems.append(f"{key!r}: {found.get(key, _MISSING)[:12]!r} not in old/new")
    changed = [key for key in set(before) | set(after) if before.get(key) != after.get(key)]
    sides = {found.get(key, _MISSING) == after.get(key, _MISSING) for key in changed}
    if atomic and len(sides) > 1:
        problems.append("a dump batch is partly old and partly new")
    archive["after-crash"] = "ok"
    if worker.open_archive(store, where, cached=False)["after-crash"] != "ok":
        problems.append("the archive does not accept a write after the crash")
    archive.close()
    return problems


def kill_runs(tmp_path: Path, store: str, mode: str, runs: int) -> tuple[list[str], int]:
    """Kill ``mode`` workers at random acks; the problems found and kills that landed early."""
    failures, landed = [], 0
    for seed in range(runs):
        rng = random.Random(seed)
        where = location(store, tmp_path, f"{mode}{seed}")
        operations = ops(seed, KILL_OPS)
        points = dump_points(seed, KILL_OPS)
        ack_count = len(points) if mode == "dump" else len(operations)
        delay = rng.uniform(0, 0.05) if mode == "compact" else rng.uniform(0, 0.003)
        proc = start(store, mode, where, seed, KILL_OPS)
        lines = kill_after_acks(proc, rng.randint(1, ack_count - 1), delay)
        last = acked(lines)
        landed += "END" not in lines and (mode != "compact" or lines[-1] == "COMPACTING")
        inflight_end = min(last + 1, KILL_OPS - 1)
        if mode == "dump":
            inflight_end = next((p for p in points if p > last), last)
        base = worker.prefill() if mode == "compact" else {}
        before = replay(operations, last, base)
        after = replay(operations, inflight_end, base)
        atomic = mode == "dump" and store != "dir"  # file and SQL dump in one transaction
        problems = check_after_kill(store, where, before, after, atomic)
        failures += [f"seed {seed}: {problem}" for problem in problems]
        if store == "dir":
            shutil.rmtree(where)
    return failures, landed


def _kill_params(default: dict[str, int], full: dict[str, int]) -> list:
    out = []
    for store in STORES:
        out.append(pytest.param(store, default[store], id=f"{store}-{default[store]}"))
        out.append(pytest.param(store, full[store], id=f"{store}-{full[store]}", marks=FULL))
    return out


@pytest.mark.parametrize(
    "store,runs",
    _kill_params({"file": 6, "dir": 6, "sql": 4}, {"file": 100, "dir": 100, "sql": 30}),
)
def test_kill9_during_direct_writes(tmp_path, campaign, store, runs):
    """A2: acked keys keep their values, the in-flight key is old or new, no phantoms."""
    failures, landed = kill_runs(tmp_path, store, "direct", runs)
    campaign.record("A2", label(store), runs, failures)
    assert failures == []
    assert landed >= 1, "no kill landed while the writer was still writing"


@pytest.mark.parametrize(
    "store,runs", _kill_params({"file": 5, "dir": 4, "sql": 3}, {"file": 50, "dir": 50, "sql": 50})
)
def test_kill9_during_dump(tmp_path, campaign, store, runs):
    """A3: as A2 per key; file and SQL dumps are atomic (no batch half old, half new)."""
    failures, landed = kill_runs(tmp_path, store, "dump", runs)
    campaign.record("A3", label(store), runs, failures)
    assert failures == []
    assert landed >= 1


@pytest.mark.parametrize("runs", [6, pytest.param(50, marks=FULL)])
def test_kill9_during_compaction(tmp_path, campaign, runs):
    failures, landed = kill_runs(tmp_path, "file", "compact", runs)
    campaign.record("A2", "file-compact", runs, failures)
    assert failures == []
    assert landed >= 1, "no kill landed during a compaction"


# --- C1 / C2: concurrent writer and reader processes ------------------------------------------
def run_writers(where: str, stop: Path, store: str, shape: tuple[int, int, int, int]) -> list:
    """Writers and 2 readers on one archive; every violation of C1/C2 found."""
    writers, keys, shared, dump_every = shape
    worker.open_archive(store, where, cached=False).close()  # created before the race
    readers = [start(store, "reader", where, stop) for _ in range(2)]
    procs = [start(store, "writer", where, w, keys, shared, dump_every) for w in range(writers)]
    outputs = [p.communicate(timeout=600)[0].decode() for p in procs]
    stop.touch()
    reports = [json.loads(r.communicate(timeout=120)[0]) for r in readers]
    problems = [
        f"writer {w}: {out}" for w, (p, out) in enumerate(zip(procs, outputs)) if p.returncode
    ]
    for report in reports:
        violations = (report["drops"], report["missing"], report["phantoms"], report["bad"])
        if report["errors"] or report["rounds"] < 1 or violations != (0, 0, 0, 0):
            problems.append(f"reader: {report}")
    final = worker.open_archive(store, where, cached=False).__asdict__()
    problems += [
        f"lost or wrong {(w, i)!r}"
        for w in range(writers)
        for i in range(keys)
        if final.get((w, i)) != f"{w}:{i}"
    ]
    for j in range(shared):
        value = final.get(("shared", j), "")
        if value != f"{value.split(':')[0]}:shared{j}":
            problems.append(f"shared key {j} holds {value!r}")
    if len(final) != writers * keys + shared:
        problems.append(f"{len(final)} keys, expected {writers * keys + shared}")
    return problems


def concurrency(tmp_path, campaign, store, shape, repetitions=1, where=None) -> None:
    item = "C2" if shape[3] else "C1"
    failures = []
    for rep in range(repetitions):
        target = where or location(store, tmp_path, f"c{rep}")
        failures += run_writers(target, tmp_path / f"stop{rep}", store, shape)
    campaign.record(item, label(store) if where is None else "postgresql", repetitions, failures)
    assert failures == []


# SQLite writers start slowly (SQLAlchemy's import): fewer of them in the short run.
SHORT_WRITERS = {"file": 8, "dir": 8, "sql": 4}
SHORT_KEYS = {"file": 40, "dir": 40, "sql": 15}


@pytest.mark.parametrize("store", STORES)
def test_concurrent_writers_lose_nothing(tmp_path, campaign, store):
    concurrency(tmp_path, campaign, store, (SHORT_WRITERS[store], SHORT_KEYS[store], 5, 0))


@pytest.mark.parametrize("store", STORES)
def test_concurrent_dumps_merge(tmp_path, campaign, store):
    concurrency(tmp_path, campaign, store, (SHORT_WRITERS[store], SHORT_KEYS[store], 5, 10))


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.parametrize("dump_every", [0, 10])
@pytest.mark.parametrize("store", STORES)
def test_campaign_eight_writers(tmp_path, campaign, store, dump_every):
    shape = (8, 200 if dump_every == 0 else 100, 5, dump_every)
    concurrency(tmp_path, campaign, store, shape, repetitions=5)


@pytest.mark.full
@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_campaign_thirty_two_writers(tmp_path, campaign, store):
    concurrency(tmp_path, campaign, store, (32, 100, 5, 0))


@pytest.mark.services
@pytest.mark.parametrize(
    "writers,keys", [(4, 20), pytest.param(8, 200, marks=FULL), pytest.param(32, 100, marks=FULL)]
)
def test_concurrent_writers_postgresql(
    tmp_path, campaign, postgres_url, unique_name, request, writers, keys
):
    from tests.kinds.sql import drop_server_table

    request.addfinalizer(lambda: drop_server_table(postgres_url, unique_name))
    where = f"{postgres_url}?table={unique_name}"
    concurrency(tmp_path, campaign, "sql", (writers, keys, 5, 0), where=where)


# --- C6: a writer killed inside a transaction -------------------------------------------------
@pytest.mark.parametrize("runs", [3, pytest.param(20, marks=FULL)])
@pytest.mark.parametrize("store", STORES)
def test_lock_of_a_killed_writer_is_released(tmp_path, campaign, store, runs):
    """C6: a writer killed inside a transaction (holding the lock) blocks nobody after, and
    (file and SQL: transactions are atomic) its uncommitted write is gone."""
    where = location(store, tmp_path, "held")
    archive = worker.open_archive(store, where, cached=False)
    problems = []
    for run in range(runs):
        proc = start(store, "hold", where)
        assert proc.stdout.readline().decode().strip() == "HOLDING"
        proc.kill()
        proc.wait()
        proc.stdout.close()
        started = time.monotonic()
        archive[run] = run
        if time.monotonic() - started >= 1.0:
            problems.append(f"run {run}: the lock took {time.monotonic() - started:.2f} s")
        if store != "dir" and "held" in archive:  # a dir_archive has no transactions
            problems.append(f"run {run}: the killed transaction left its write behind")
        archive.pop("held", None)
    if archive.__asdict__() != {run: run for run in range(runs)}:
        problems.append("the archive holds something else")
    campaign.record("C6", f"{label(store)}-transaction", runs, problems)
    assert problems == []


@pytest.mark.full
@pytest.mark.services
def test_concurrent_writers_mariadb(tmp_path, campaign, mariadb_url, unique_name, request):
    from tests.kinds.sql import drop_server_table

    request.addfinalizer(lambda: drop_server_table(mariadb_url, unique_name))
    where = f"{mariadb_url}?table={unique_name}"
    failures = run_writers(where, tmp_path / "stop", "sql", (8, 200, 5, 0))
    campaign.record("C1", "mariadb", 1, failures)
    assert failures == []


def test_sqlite_reopens_as_wal(tmp_path):
    import sqlalchemy as sa

    d = worker.open_archive("sql", f"sqlite:///{tmp_path}/wal.db", cached=False)
    d["a"] = 1
    engine = sa.create_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    d.close()
