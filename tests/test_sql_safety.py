"""SQL archives under attack and damage: reliability items E2, E4 (vector c) and B3.

E2: hostile keys and table names never become SQL (an event listener sees only the intended
statements), names differing in case never collide silently, and a failed statement rolls
back so that the same archive and other processes can still write. E4: a planted pickle is
never executed in safe mode or under HMAC signing. B3: flipped, truncated or zeroed bytes in
the SQLite file never come back as a wrong value.
"""

from __future__ import annotations

import collections
import os
import pickle
import random
import re
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from klepto import _safeformat
from klepto._canonical import stable_hash
from klepto.archives import sql_archive, sqltable_archive
from klepto.errors import CorruptionError, SignatureError
from klepto.integrity import seal
from tests.kinds.sql import drop_server_database

HOSTILE_KEYS = [
    'x"; DROP TABLE y; --',
    "a'b",
    "'; DELETE FROM klepto_settings; --",
    "k" * 200,
    "Memo",
    "memo",
    "A",
    "a",
    "nul\x00byte",
    "\u00e9",
    "e\u0301",
]

_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres_url", id="postgresql", marks=pytest.mark.services),
    pytest.param("mariadb_url", id="mariadb", marks=pytest.mark.services),
]


@pytest.fixture(params=_BACKENDS)
def location(request, tmp_path, unique_name):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/e2.db"
    base = sa.engine.make_url(request.getfixturevalue(request.param))
    url = base.set(database="k" + unique_name).render_as_string(hide_password=False)
    request.addfinalizer(lambda: drop_server_database(url))
    return url


@pytest.fixture
def statements():
    """Every statement any engine sends (SQLAlchemy events; on SQLite, SQLite's own trace)."""
    seen: list[str] = []

    def on_execute(conn, cursor, statement, *rest):
        seen.append(statement)

    def on_connect(dbapi_connection, record):
        if hasattr(dbapi_connection, "set_trace_callback"):
            dbapi_connection.set_trace_callback(seen.append)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_execute)
    sa.event.listen(sa.engine.Engine, "connect", on_connect)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", on_execute)
    sa.event.remove(sa.engine.Engine, "connect", on_connect)


def _unexpected(seen: list[str], table: str) -> list[str]:
    """Statements that are neither reads nor the archive's own DDL/DML on its tables."""
    tables = f"(`?{table}`?|`?klepto_settings`?)"
    allowed = re.compile(
        rf"\s*(select|show|pragma|set |begin|commit|rollback"
        rf"|insert (ignore )?into {tables} |delete from {tables}( |$)|update {tables} "
        rf"|create table if not exists {tables} )",
        re.IGNORECASE,
    )
    return [s for s in seen if not allowed.match(s)]


def _make_victim(url: str) -> sa.Engine:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE y (v INTEGER)")
        conn.exec_driver_sql("INSERT INTO y (v) VALUES (42)")
    return engine


@pytest.mark.parametrize("cls", [sqltable_archive, sql_archive], ids=["sqltable", "sql"])
def test_hostile_keys_are_row_values(cls, location, statements):
    table = "memo" if cls is sqltable_archive else "klepto_sql_archive"
    d = cls(location, cached=False)  # creates the database on a server
    victim = _make_victim(location)
    statements.clear()
    for key in HOSTILE_KEYS:
        d[key] = key
    assert sorted(d) == sorted(HOSTILE_KEYS)  # case and normal-form variants stay distinct
    assert all(d[key] == key for key in HOSTILE_KEYS)
    del d["Memo"], d["A"]
    assert d["memo"] == "memo" and d["a"] == "a" and len(d) == len(HOSTILE_KEYS) - 2
    d.update({key: 1 for key in HOSTILE_KEYS})
    assert d.pop(HOSTILE_KEYS[0]) == 1
    assert _unexpected(statements, table) == []
    assert not [s for s in statements if "DROP" in s.upper() or HOSTILE_KEYS[0] in s]
    with victim.connect() as conn:
        assert conn.exec_driver_sql("SELECT v FROM y").scalar() == 42
        conn.exec_driver_sql("DROP TABLE y")
        conn.commit()
    victim.dispose()
    d.close()


@pytest.mark.parametrize("table", ['x"; DROP TABLE y; --', "a'b", "t" * 200])
def test_hostile_table_names_are_refused_before_any_sql(table, tmp_path, statements):
    with pytest.raises(ValueError, match="table name"):
        sqltable_archive(f"sqlite:///{tmp_path}/t.db?table={table}", cached=False)
    assert statements == []
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:5432/foo; DROP DATABASE bar",
        "mysql+pymysql://root@127.0.0.1:3306/foo; DROP DATABASE bar",
    ],
)
def test_hostile_database_names_are_refused_before_connecting(url, statements):
    with pytest.raises(ValueError, match="database name"):
        sql_archive(url, cached=False)
    assert statements == []


_OTHER_WRITER = """
import sys
from klepto.archives import sqltable_archive
kwds = {"connect_args": {"timeout": 3}} if sys.argv[1].startswith("sqlite") else {}
d = sqltable_archive(sys.argv[1] + "?table=memo", cached=False, **kwds)
d["from-other-process"] = 7
print(d["from-other-process"])
"""


def test_failed_statement_rolls_back_and_never_poisons(location):
    d = sqltable_archive(f"{location}?table=memo", cached=False)
    d["a"] = 1
    bad = sa.text("INSERT INTO memo (kdigest, kbytes, vbytes) VALUES (:d, :k, NULL)")
    with pytest.raises(sa.exc.IntegrityError), d._connector.transaction() as conn:
        d["inside"] = 1
        conn.execute(bad, {"d": "0" * 32, "k": b"k"})  # NOT NULL violation
    assert "inside" not in d  # the whole transaction was rolled back
    with pytest.raises(TypeError), d.transaction():
        d["b"] = 2
        d[object()] = 3  # a key without a stable encoding is refused
    assert "b" not in d
    d["c"] = 3  # the same archive still writes
    other = subprocess.run(
        [sys.executable, "-c", _OTHER_WRITER, location],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "7"
    assert d.__asdict__() == {"a": 1, "c": 3, "from-other-process": 7}
    d.close()


# --- E4 vector c: a planted pickle row -----------------------------------------------------
class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _plant(path, table, key, kbytes, vbytes):
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {table} (kdigest, kbytes, vbytes) VALUES (?, ?, ?)",
            (stable_hash(key), kbytes, vbytes),
        )
    engine.dispose()


def _safe_key(key, hmac_key=None):
    return b"S" + seal(_safeformat.dumps(key), key=hmac_key)


@pytest.mark.parametrize(
    "options",
    [{"serializer": "safe", "safe": True}, {"key": b"secret"}, {"key": b"secret", "safe": True}],
    ids=["safe-serializer", "hmac", "hmac-safe"],
)
def test_planted_pickle_is_never_executed(options, tmp_path, monkeypatch):
    monkeypatch.delenv("KLEPTO_HMAC_KEY", raising=False)
    path, marker = tmp_path / "e4.db", tmp_path / "PWNED"
    d = sqltable_archive(f"sqlite:///{path}?table=memo", cached=False, **options)
    d["good"] = 1
    exploit = pickle.dumps(_Exploit(marker))
    hmac_key = options.get("key")
    _plant(path, "memo", "evil-value", _safe_key("evil-value", hmac_key), seal(exploit))
    forged = seal(exploit, key=b"attacker's key")
    _plant(path, "memo", "evil-forged", _safe_key("evil-forged", hmac_key), forged)
    for key in ("evil-value", "evil-forged"):
        with pytest.raises((CorruptionError, ValueError)):
            d[key]
    assert d["good"] == 1
    _plant(path, "memo", "evil-key", b"P" + seal(exploit), d._codec.packer.pack(0))
    with pytest.raises((CorruptionError, ValueError)):
        list(d)
    with pytest.raises((CorruptionError, ValueError)):
        d.__asdict__()
    assert not marker.exists()
    if hmac_key:
        with pytest.raises(SignatureError):
            d["evil-value"]


# --- B3: damage to the SQLite file ---------------------------------------------------------
def _build(path, count=60):
    d = sqltable_archive(f"sqlite:///{path}?table=memo", cached=False)
    rng = random.Random(7)
    expected = {
        f"key-{i}": bytes(rng.randrange(256) for _ in range(rng.choice((8, 300, 2500))))
        for i in range(count)
    }
    d.update(expected)
    d.close()  # the last connection checkpoints the WAL into the main file
    assert not os.path.exists(f"{path}-wal")
    return expected


def _inspect(path, expected) -> str:
    """'intact', 'detected' or 'lost' for one damaged file; a wrong value fails the test."""
    try:
        d = sqltable_archive(f"sqlite:///{path}?table=memo", cached=False)
        listed = set(d)
        outcome = "intact"
        for key, value in expected.items():
            try:
                got = d[key]
            except KeyError:
                outcome = "lost"
                continue
            assert got == value, f"WRONG value for {key!r}"
        if listed != set(expected):
            outcome = "lost"
        d.close()
    except (CorruptionError, sa.exc.DatabaseError):
        return "detected"
    return outcome


def _damage(kind, data, rng):
    damaged = bytearray(data)
    if kind == "flip":
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del damaged[rng.randrange(len(damaged)) :]
    else:  # zero4k
        page = rng.randrange(len(damaged) // 4096)
        damaged[page * 4096 : (page + 1) * 4096] = bytes(4096)
    return bytes(damaged)


def _campaign(tmp_path, kind, trials):
    base = tmp_path / "base.db"
    expected = _build(base)
    data = base.read_bytes()
    rng = random.Random(f"b3-{kind}")
    outcomes = collections.Counter()
    target = tmp_path / "damaged.db"
    for _ in range(trials):
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{target}{suffix}"):
                os.remove(f"{target}{suffix}")
        target.write_bytes(_damage(kind, data, rng))
        outcomes[_inspect(target, expected)] += 1
    return outcomes


@pytest.mark.parametrize("kind", ["flip", "truncate", "zero4k"])
def test_damage_never_gives_a_wrong_value(kind, tmp_path):
    outcomes = _campaign(tmp_path, kind, 40)
    assert sum(outcomes.values()) == 40
    if kind != "flip":  # a flip may hide a row from SQLite's b-tree search (reported)
        assert outcomes["lost"] == 0, outcomes


@pytest.mark.full
@pytest.mark.faults
@pytest.mark.parametrize("kind", ["flip", "truncate", "zero4k"])
def test_damage_campaign_full(kind, tmp_path):
    outcomes = _campaign(tmp_path, kind, 200)
    print(f"B3 {kind}: {dict(outcomes)}")
    if kind != "flip":
        assert outcomes["lost"] == 0, outcomes


def test_flipped_value_names_table_and_key(tmp_path):
    path = tmp_path / "one.db"
    d = sqltable_archive(f"sqlite:///{path}?table=memo", cached=False)
    d["victim"] = b"v" * 64
    d.close()
    data = bytearray(path.read_bytes())
    at = data.find(b"v" * 64)
    data[at + 10] ^= 0x01
    path.write_bytes(bytes(data))
    again = sqltable_archive(f"sqlite:///{path}?table=memo", cached=False)
    with pytest.raises(CorruptionError, match=r"table memo .*victim") as caught:
        again["victim"]
    assert type(caught.value).__name__ == "CorruptArchiveError"


def test_sqlite_engine_is_fork_and_thread_safe(tmp_path):
    """Forked children and threads use their own connections; nothing is lost."""
    script = textwrap.dedent(f"""
        import os, threading
        from klepto.archives import sqltable_archive
        d = sqltable_archive("sqlite:///{tmp_path}/fork.db", cached=False)
        d["parent"] = 0
        pids = []
        for n in range(3):
            pid = os.fork()
            if pid == 0:
                for i in range(50):
                    d[f"child{{n}}-{{i}}"] = i
                os._exit(0)
            pids.append(pid)
        def work(t):
            for i in range(50):
                d[f"thread{{t}}-{{i}}"] = i
        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for t in threads: t.start()
        for t in threads: t.join()
        codes = [os.waitpid(p, 0)[1] for p in pids]
        assert codes == [0, 0, 0], codes
        print(len(d))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(1 + 3 * 50 + 3 * 50)
