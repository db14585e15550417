"""How SQL archives set up a SQLite file (klepto.archives._sqlitefile.on_connect).

These settings are what the safety matrix in docs/archives.rst promises, and what W3's
write figures were measured with; a change to any of them changes durability or the cost
of a write, so it must be a deliberate one (and documented).
"""

from __future__ import annotations

import sqlite3

import pytest

from klepto.archives import sql_archive, sqltable_archive

_SYNCHRONOUS_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _pragma(archive, name: str):
    """The value of ``PRAGMA name`` on a connection from the archive's engine (set up alike)."""
    with archive.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


@pytest.fixture(params=[sqltable_archive, sql_archive], ids=["sqltable", "sql"])
def kind(request):
    return request.param


def test_a_file_runs_in_wal_with_synchronous_normal(kind, tmp_path):
    archive = kind(f"sqlite:///{tmp_path}/s.db", cached=False)
    try:
        archive["k"] = 1
        assert _pragma(archive, "journal_mode") == "wal"
        # NORMAL in WAL: a commit is in the log before it returns (a killed process loses
        # nothing acknowledged); the log is synced at checkpoints, not at every commit.
        assert _SYNCHRONOUS_LEVELS[_pragma(archive, "synchronous")] == "NORMAL"
    finally:
        archive.close()
    # Persistent: another program opening the file finds it in WAL mode too.
    other = sqlite3.connect(tmp_path / "s.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_synchronous_full_syncs_every_commit(kind, tmp_path):
    archive = kind(f"sqlite:///{tmp_path}/f.db", cached=False, synchronous="full")
    try:
        archive["k"] = 1
        assert _SYNCHRONOUS_LEVELS[_pragma(archive, "synchronous")] == "FULL"
        assert archive["k"] == 1
    finally:
        archive.close()


def test_synchronous_must_be_a_sqlite_level(kind, tmp_path):
    with pytest.raises(ValueError, match="synchronous"):
        kind(f"sqlite:///{tmp_path}/x.db", cached=False, synchronous="sometimes")


def test_checkpoints_are_left_to_sqlite(kind, tmp_path):
    """SQLite's own checkpoint interval (1000 WAL pages, about 500 single-key writes).

    Measured on the project's VM: a 4000-page interval made the W3 write samples look
    better (fewer of them hold a checkpoint) but the cost of 10k writes plus close only
    ~6% lower, while the log grows fourfold and more reads go through it. Kept as SQLite
    ships it, like diskcache.
    """
    archive = kind(f"sqlite:///{tmp_path}/c.db", cached=False)
    try:
        archive["k"] = 1
        assert _pragma(archive, "wal_autocheckpoint") == 1000
    finally:
        archive.close()


def test_a_connection_waits_while_another_holds_a_new_database(tmp_path):
    # Two processes opening a new database at once both switch it to WAL; the loser is
    # told "database is locked" at once and must look again, not fail.
    import sqlite3
    import threading

    from klepto.archives import _sqlitefile

    path = str(tmp_path / "new.db")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, holder.rollback).start()
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    _sqlitefile._wal_unless_read_only(other.cursor())
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
