"""Single-key reads of SQLite archives (``Connector.lookup``): straight to the driver, yet
checked, current across processes, and inside a transaction, part of it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from klepto._canonical import stable_hash
from klepto.archives import sql_archive, sqltable_archive
from klepto.errors import CorruptArchiveError
from klepto.integrity import Packer


@pytest.fixture(params=["sqltable", "sql"])
def opened(request, tmp_path):
    """``(open, path)``: ``open()`` gives a new archive on the same SQLite file."""
    path = tmp_path / "r.db"
    if request.param == "sqltable":
        url = f"sqlite:///{path}?table=memo"
        table = "memo"

        def open_archive():
            return sqltable_archive(url, cached=False)
    else:
        url = f"sqlite:///{path}"
        table = "klepto_sql_archive"

        def open_archive():
            return sql_archive(url, cached=False)

    return open_archive, path, table


def _write_elsewhere(url: str, kind: str, code: str) -> None:
    """Run ``code`` on archive ``d`` (``kind`` at ``url``) in another process."""
    script = (
        f"from klepto.archives import {kind}_archive as a\n"
        f"d = a({url!r}, cached=False)\n{code}\nd.close()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def _no_reader_holds_the_wal(path) -> bool:
    """Whether a full checkpoint (it waits for no reader here) can reset the WAL."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)
    finally:
        other.close()


def test_a_read_sees_what_another_process_committed(opened):
    open_archive, path, _ = opened
    d = open_archive()
    d["a"] = 1
    d["gone"] = 0
    assert d["a"] == 1 and "gone" in d  # the statement is prepared and kept
    kind = "sqltable" if type(d).__name__ == "sqltable_archive" else "sql"
    url = d.name if kind == "sqltable" else f"sqlite:///{path}"
    _write_elsewhere(url, kind, "d['a'] = 2; d['b'] = 3; del d['gone']")
    assert d["a"] == 2
    assert d.get("b") == 3
    assert "gone" not in d
    with pytest.raises(KeyError):
        d["gone"]
    d.close()


def test_a_read_leaves_no_transaction_open(opened):
    open_archive, path, _ = opened
    d = open_archive()
    d["a"] = 1
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert d["a"] == 1
    with pytest.raises(KeyError):
        d["missing"]
    d["b"] = 2  # a frame in the WAL that a reader's snapshot would pin
    assert d["b"] == 2
    assert _no_reader_holds_the_wal(path)
    d.close()


def test_a_read_inside_a_transaction_sees_its_writes(opened):
    open_archive, _, _ = opened
    d = open_archive()
    d["a"] = 1
    seen_by_others = []
    with d.transaction():
        d["a"] = 2
        d["b"] = 3
        assert d["a"] == 2 and d.get("b") == 3 and "b" in d
        del d["a"]
        assert "a" not in d
        other = open_archive()
        reader = threading.Thread(target=lambda: seen_by_others.append(other.get("a")))
        reader.start()
        reader.join()  # another connection reads the last committed state
        other.close()
    assert seen_by_others == [1]
    assert "a" not in d and d["b"] == 3
    with pytest.raises(RuntimeError), d.transaction():
        d["b"] = 4
        assert d["b"] == 4
        raise RuntimeError("abort")
    assert d["b"] == 3  # rolled back; the connection reads on
    d.close()


def test_another_thread_waits_for_a_transaction(opened):
    open_archive, _, _ = opened
    d = open_archive()
    d["a"] = 1
    started, seen = threading.Event(), []
    with d.transaction():
        d["a"] = 2
        reader = threading.Thread(target=lambda: (started.set(), seen.append(d["a"])))
        reader.start()
        started.wait()
        reader.join(0.2)
        assert reader.is_alive()  # it shares the connection, so it waits for the commit
        d["a"] = 3
    reader.join()
    assert seen == [3]
    d.close()


def _tamper(path, table: str, key: str, change) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        (vbytes,) = conn.execute(
            f"SELECT vbytes FROM {table} WHERE kdigest = ?", (stable_hash(key),)
        ).fetchone()
        conn.execute(
            f"UPDATE {table} SET vbytes = ? WHERE kdigest = ?",
            (change(bytes(vbytes)), stable_hash(key)),
        )


def _flip(blob: bytes, at: int) -> bytes:
    out = bytearray(blob)
    out[at] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(
    "change",
    [
        lambda blob: _flip(blob, len(blob) - 3),  # payload
        lambda blob: _flip(blob, 5),  # stored CRC
        lambda blob: _flip(blob, 0),  # magic
        lambda blob: blob[:6],  # truncated inside the header
        lambda blob: blob[:-1],  # truncated payload
    ],
    ids=["payload", "crc", "magic", "header", "truncated"],
)
def test_damage_is_reported_never_a_miss(opened, change):
    open_archive, path, table = opened
    d = open_archive()
    d["victim"] = {"x": "y" * 40}
    d["fine"] = 1
    assert d["victim"] == {"x": "y" * 40}  # read once, so the damage meets a warm path
    _tamper(path, table, "victim", change)
    with pytest.raises(CorruptArchiveError, match=rf"table {table} .*victim"):
        d["victim"]
    with pytest.raises(CorruptArchiveError):
        d.get("victim", "default")
    with pytest.raises(CorruptArchiveError):
        "victim" in d  # noqa: B015
    assert d["fine"] == 1  # the connection reads on
    d["victim"] = 2
    assert d["victim"] == 2
    d.close()


def test_a_value_moved_to_another_key_is_refused(opened):
    open_archive, path, table = opened
    d = open_archive()
    d["a"], d["b"] = 1, 2
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute(
            f"UPDATE {table} SET vbytes = (SELECT vbytes FROM {table} WHERE kdigest = ?) "
            "WHERE kdigest = ?",
            (stable_hash("a"), stable_hash("b")),
        )
    with pytest.raises(CorruptArchiveError, match="checksum"):
        d["b"]
    assert d["a"] == 1
    d.close()


@pytest.mark.parametrize(
    "options",
    [{"codec": "zlib"}, {"key": b"secret"}, {"serializer": "json"}, {"serialized": False}],
    ids=["compressed", "signed", "json", "plain"],
)
def test_reads_that_the_packer_checks(tmp_path, options):
    d = sqltable_archive(f"sqlite:///{tmp_path}/p.db?table=memo", cached=False, **options)
    value = "text " * 20
    d["k"] = value
    assert d["k"] == value and d.get("k") == value and "k" in d
    d.close()


def test_the_quick_check_accepts_what_the_packer_accepts(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/q.db?table=memo", cached=False)
    d["small"], d["large"] = "s", b"L" * 100_000  # a copy, and a view of the row
    assert d["small"] == "s" and d["large"] == b"L" * 100_000
    codec = d._codec
    assert codec._quick_loads is not None
    for key, value in [("small", "s"), ("large", b"L" * 100_000)]:
        blob = codec.pack_value(value, stable_hash(key))
        assert Packer().unpack(blob, context=stable_hash(key).encode()) == value
        assert codec.unpack_value(blob, key) == value
    d.close()


def test_sqlite_damage_on_the_read_path_is_named(opened, monkeypatch):
    open_archive, _, _ = opened
    d = open_archive()
    d["a"] = 1
    state = d._connector._state()
    real = state.raw_reader

    class Damaged:
        """The held connection, as SQLite answers once its file is damaged."""

        def cursor(self):
            return self

        @property
        def connection(self):
            return self

        def execute(self, sql, params):
            raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(state, "raw_reader", Damaged())
    monkeypatch.setattr(state, "cursor", None)
    with pytest.raises(CorruptArchiveError, match="damage"):
        d["a"]
    monkeypatch.setattr(state, "raw_reader", real)
    assert d["a"] == 1
    d.close()


def test_a_read_after_the_table_is_dropped_fails_loudly(opened):
    open_archive, path, table = opened
    d = open_archive()
    d["a"] = 1
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute(f"DROP TABLE {table}")
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        d["a"]
    d.close()


def test_a_read_on_a_lost_connection_runs_again_on_a_new_one(opened):
    open_archive, _, _ = opened
    d = open_archive()
    d["a"] = 1
    assert d["a"] == 1
    d._connector._state().raw_reader.close()  # as if the driver had lost it
    assert d["a"] == 1 and "a" in d
    d["b"] = 2
    assert d["b"] == 2
    d.close()
