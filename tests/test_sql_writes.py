"""Single-key writes of SQLite archives (klepto.archives._sqlitefile): committed one by one,
rolled back on errors, ordered across processes by the write gate."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from klepto._canonical import stable_hash
from klepto.archives import _sqlitefile, sqltable_archive

fcntl = pytest.importorskip("fcntl")


@pytest.fixture
def archive(tmp_path):
    d = sqltable_archive(f"sqlite:///{tmp_path}/w.db?table=memo", cached=False)
    yield d
    d.close()


def _lock_is_free(path) -> bool:
    """Whether another connection can take the database's write lock without waiting."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_each_write_is_committed_before_it_returns(archive, tmp_path):
    archive["a"] = 1
    assert archive.add("b", 2) and not archive.add("b", 3)
    del archive["a"]
    with pytest.raises(KeyError):
        del archive["a"]
    other = sqltable_archive(f"sqlite:///{tmp_path}/w.db?table=memo", cached=False)
    assert other.__asdict__() == {"b": 2}  # another connection sees every write
    assert _lock_is_free(tmp_path / "w.db")


def test_a_failing_write_is_rolled_back(archive, tmp_path):
    archive["keep"] = 0
    refuse = stable_hash("bad")
    with sqlite3.connect(tmp_path / "w.db") as conn:
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON memo WHEN NEW.kdigest = '{refuse}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(sa.exc.IntegrityError, match="refused"):
        archive["bad"] = 1
    assert _lock_is_free(tmp_path / "w.db")
    archive["next"] = 2  # the connection is usable
    assert archive.__asdict__() == {"keep": 0, "next": 2}


def test_a_write_that_cannot_roll_back_drops_its_connection(archive, tmp_path, monkeypatch):
    archive["keep"] = 0

    def stuck(dbapi_conn, sql, params):
        dbapi_conn.execute("BEGIN IMMEDIATE")
        dbapi_conn.execute(sql, params)
        raise sqlite3.OperationalError("disk I/O error")  # and no ROLLBACK

    monkeypatch.setattr(_sqlitefile, "write_once", stuck)
    with pytest.raises(sa.exc.OperationalError, match="I/O"):
        archive["lost"] = 1
    monkeypatch.undo()
    assert _lock_is_free(tmp_path / "w.db")  # the stuck transaction died with its connection
    archive["next"] = 2
    assert archive.__asdict__() == {"keep": 0, "next": 2}


def test_writes_inside_a_transaction_join_it(archive):
    with pytest.raises(RuntimeError), archive.transaction():
        archive["a"] = 1
        archive.add("b", 2)
        raise RuntimeError("abort")
    assert archive.__asdict__() == {}


def test_the_gate_orders_writers(archive, tmp_path):
    archive["first"] = 0  # opens the gate file
    fd = os.open(tmp_path / "w.db.klepto-gate", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: another writer
    writer = threading.Thread(target=archive.__setitem__, args=("waits", 1))
    try:
        writer.start()
        time.sleep(0.2)
        assert writer.is_alive()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    writer.join(10)
    assert archive["waits"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_has_a_gate_of_its_own(archive):
    archive["parent"] = 0
    gate = archive._connector._state().gate
    with gate:  # held by the parent: a child that shared its open file would not wait
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                archive["child"] = 1
            finally:
                os._exit(0)
        time.sleep(0.3)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still waiting for the gate
    _, status = os.waitpid(pid, 0)
    assert status == 0 and archive["child"] == 1


def test_the_gate_goes_with_the_database(tmp_path):
    path = tmp_path / "gone.db"
    d = sqltable_archive(f"sqlite:///{path}?table=t", cached=False)
    d["a"] = 1
    assert (tmp_path / "gone.db.klepto-gate").exists()
    d.__drop__(database=True)
    assert sorted(os.listdir(tmp_path)) == []


def test_no_gate_where_it_cannot_be_made(tmp_path):
    assert _sqlitefile.gate_path(None, in_memory=True) is None
    assert _sqlitefile.gate_path("file:x.db?mode=ro", in_memory=False) is None
    gate = _sqlitefile.WriteGate(str(tmp_path / "missing-dir" / "x.db.klepto-gate"))
    with gate:  # cannot be opened: does nothing
        pass
    gate.close()
