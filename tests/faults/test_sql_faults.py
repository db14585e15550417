"""Fault campaign for the SQL archives with real processes (reliability A2, A3, C1, C2).

* kill -9 while a writer process sets keys directly (A2) or dumps a cached front (A3): every
  acknowledged key keeps its acknowledged value, the in-flight key (or dump batch) holds its
  old or its new value -- a dump batch all old or all new --, no phantom keys, and the
  archive reopens and accepts a write.
* 2 and 8 writer processes plus 2 readers on one archive, on SQLite and on PostgreSQL (C1),
  and in dump mode on SQLite (C2): 0 lost keys, 0 exceptions, readers never see the key
  count drop, a listed key raise KeyError, or a phantom key.
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from klepto.archives import sqltable_archive
from tests.kinds.sql import drop_server_table

pytestmark = pytest.mark.faults

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPS = 300

# One deterministic operation sequence, shared by the writer and the checker.
_PLAN = """
import random
def plan(seed, ops):
    rng = random.Random(seed)
    keys, out = [], []
    for n in range(ops):
        if keys and rng.random() < 0.25:
            key = rng.choice(keys)
        else:
            key = f"key-{n}"
            keys.append(key)
        out.append((key, rng.randbytes(rng.randrange(8, 4097))))
    return out
"""

_KILL_WRITER = (
    _PLAN
    + f"OPS = {OPS}\n"
    + """
import sys
from klepto.archives import sqltable_archive
url, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed + 1)
d = sqltable_archive(url, cached=(mode == "dump"), autodump=False) if mode == "dump" \\
    else sqltable_archive(url, cached=False)
batch_end = rng.randint(1, 20)
for n, (key, value) in enumerate(plan(seed, OPS)):
    d[key] = value
    if mode == "direct":
        print(n, flush=True)
    elif n + 1 == batch_end or n + 1 == OPS:
        d.dump()
        print(n, flush=True)
        batch_end = n + 1 + rng.randint(1, 20)
"""
)


def _plan(seed: int) -> list[tuple[str, bytes]]:
    namespace: dict = {}
    exec(_PLAN, namespace)  # the very code the writer runs
    return namespace["plan"](seed, OPS)


def _python(script: str, *args: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True, **popen
    )


def _kill_after_acks(url: str, seed: int, mode: str) -> int:
    """Run the writer, SIGKILL it 0-3 ms after a random ack; the last acked op index."""
    rng = random.Random(seed)
    target = rng.randrange(1, OPS // (1 if mode == "direct" else 10))
    writer = _python(_KILL_WRITER, url, str(seed), mode, stdout=subprocess.PIPE)
    last, acks = -1, 0
    for line in writer.stdout:
        last, acks = int(line), acks + 1
        if acks >= target:
            time.sleep(rng.random() * 0.003)
            writer.send_signal(signal.SIGKILL)
            break
    for line in writer.stdout:  # acks the writer printed before it died count too
        last = int(line)
    writer.wait(timeout=60)
    writer.stdout.close()
    return last


def _check_after_kill(url: str, seed: int, mode: str, last: int) -> None:
    ops = _plan(seed)
    acked: dict[str, bytes] = {}
    for key, value in ops[: last + 1]:
        acked[key] = value
    batch = ops[last + 1 : last + 1 + (1 if mode == "direct" else 20)]
    d = sqltable_archive(url, cached=False)
    stored = d.__asdict__()
    in_flight = {key for key, _ in batch}
    assert set(stored) <= set(acked) | in_flight, "phantom keys"
    for key, value in acked.items():
        if key not in in_flight:
            assert stored.get(key) == value, f"acked key {key!r} lost or changed"
    for key in in_flight:
        new = [v for k, v in batch if k == key]
        allowed = {acked.get(key), *new}
        assert stored.get(key) in allowed, f"in-flight key {key!r} holds garbage"
        if key in acked:
            assert key in stored, f"in-flight key {key!r} vanished"
    d["after-kill"] = b"ok"
    assert d["after-kill"] == b"ok"
    d.__drop__()


def _kill_runs(tmp_path, mode: str, runs: int) -> None:
    for run in range(runs):
        url = f"sqlite:///{tmp_path}/kill-{mode}-{run}.db?table=memo"
        last = _kill_after_acks(url, 1000 + run, mode)
        _check_after_kill(url, 1000 + run, mode, last)


@pytest.mark.parametrize(("mode", "runs"), [("direct", 5), ("dump", 3)])
def test_kill9_during_writes(tmp_path, mode, runs):
    _kill_runs(tmp_path, mode, runs)


@pytest.mark.full
@pytest.mark.parametrize("mode", ["direct", "dump"])
def test_kill9_during_writes_full(tmp_path, mode):
    _kill_runs(tmp_path, mode, 30)


# --- concurrent writers and readers ------------------------------------------------------
_WRITER = """
import sys
from klepto.archives import sqltable_archive
url, me, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if mode == "dump":
    d = sqltable_archive(url, cached=True, autodump=False)
else:
    d = sqltable_archive(url, cached=False)
for i in range(count):
    d[f"w{me}-{i}"] = (me, i)
    if i % 40 == 0:
        d[f"shared-{i // 40 % 5}"] = (me, i)
    if mode == "dump" and i % 10 == 9:
        d.dump()
d.dump()
"""

_READER = """
import os, re, sys
from klepto.archives import sqltable_archive
url, stop = sys.argv[1], sys.argv[2]
d = sqltable_archive(url, cached=False)
pattern = re.compile(r"w\\d+-\\d+|shared-\\d")
last, problems, rounds = 0, [], 0
while not os.path.exists(stop) or rounds < 2:
    rounds += 1
    keys = list(d)
    if len(keys) < last:
        problems.append(f"count dropped {last} -> {len(keys)}")
    last = max(last, len(keys))
    problems += [f"phantom {k!r}" for k in keys if not pattern.fullmatch(str(k))]
    for key in keys[:: max(1, len(keys) // 20)]:
        try:
            d[key]
        except KeyError:
            problems.append(f"listed key {key!r} raised KeyError")
print(rounds, len(problems))
sys.exit(1 if problems else 0)
"""


def _run_concurrently(url: str, tmp_path, writers: int, count: int, mode: str) -> None:
    sqltable_archive(url, cached=False)  # created once, before the race
    stop = tmp_path / f"stop-{writers}-{mode}"
    readers = [_python(_READER, url, str(stop), stdout=subprocess.PIPE) for _ in range(2)]
    procs = [
        _python(_WRITER, url, str(me), str(count), mode, stderr=subprocess.PIPE)
        for me in range(writers)
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        if proc.returncode:
            failures.append(err)
    stop.touch()
    for reader in readers:
        out, _ = reader.communicate(timeout=120)
        if reader.returncode:
            failures.append(f"reader violations: {out}")
    assert failures == []
    d = sqltable_archive(url, cached=False)
    stored = d.__asdict__()
    for me in range(writers):
        for i in range(count):
            assert stored[f"w{me}-{i}"] == (me, i), "lost or wrong key"
    shared = {k: v for k, v in stored.items() if k.startswith("shared-")}
    assert len(shared) == 5 and all(v[0] in range(writers) for v in shared.values())
    assert len(stored) == writers * count + 5
    d.close()


@pytest.mark.parametrize(("writers", "mode"), [(2, "direct"), (8, "direct"), (8, "dump")])
def test_concurrent_writers_sqlite(tmp_path, writers, mode):
    _run_concurrently(f"sqlite:///{tmp_path}/c1.db?table=memo", tmp_path, writers, 200, mode)


@pytest.mark.services
@pytest.mark.parametrize("writers", [2, 8])
def test_concurrent_writers_postgresql(tmp_path, writers, postgres_url, unique_name, request):
    request.addfinalizer(lambda: drop_server_table(postgres_url, unique_name))
    url = f"{postgres_url}?table={unique_name}"
    _run_concurrently(url, tmp_path, writers, 200, "direct")


@pytest.mark.full
@pytest.mark.services
def test_concurrent_writers_mariadb(tmp_path, mariadb_url, unique_name, request):
    request.addfinalizer(lambda: drop_server_table(mariadb_url, unique_name))
    _run_concurrently(f"{mariadb_url}?table={unique_name}", tmp_path, 8, 200, "direct")


def test_sqlite_reopens_as_wal(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/wal.db", cached=False)
    d["a"] = 1
    engine = sa.create_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    d.close()
