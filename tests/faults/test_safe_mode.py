"""E4: an untrusted store opened in safe mode never runs code.

An attacker who can write the storage plants a pickle whose ``__reduce__`` creates a marker
file: (a) as a value, (b) as a directory entry, (c) as a SQL row, (d) as a log record (the
operation store, the checkpoint log, the branching log, the record file) and (e) as a
checkpoint. Opening and reading in safe mode (``safe=True``: the code-free serializer, or
pickles signed with a key that is not stored with the data) must raise a clear klepto error
and never create the marker. A signed store refuses forged and unsigned entries before
unpickling, and its key appears in none of its files.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from klepto.errors import KleptoError
from klepto.integrity import KEY_ENV

pytestmark = pytest.mark.faults

KEY = b"the victim's key, kept elsewhere"


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def refused(load) -> str | None:
    """None if ``load()`` raised a clear error: a klepto error, or the ValueError of a
    setting that contradicts the stored one (an unsigned store opened with a key, which
    architecture rule 3 prescribes); otherwise what happened."""
    try:
        load()
    except KleptoError:
        return None
    except ValueError as exc:
        return None if "signed" in str(exc) else f"ValueError: {exc}"
    except Exception as exc:  # anything else is not the clear error the item asks for
        return f"{type(exc).__name__}: {exc}"
    return "loaded without an error"


def check(campaign, vector: str, store: str, marker: Path, load) -> None:
    outcome = refused(load)
    problems = [] if outcome is None else [outcome]
    if marker.exists():
        problems.append("the planted code ran")
    campaign.record("E4", f"{store} ({vector})", 1, problems)
    assert problems == []


def _archive(store: str, where: Path, **options):
    from klepto import archives

    if store == "sqlite":
        return archives.sqltable_archive(f"sqlite:///{where}?table=memo", cached=False, **options)
    factory = {"file": archives.file_archive, "dir": archives.dir_archive}[store]
    return factory(str(where), cached=False, **options)


def _read_all(archive) -> None:
    for key in list(archive):
        archive[key]


ATTACKS = {  # what the attacker wrote with -> what the victim opens with
    "pickle-vs-safe": ({}, {"safe": True}),
    "unsigned-vs-signed": ({}, {"key": KEY, "safe": True}),
    "forged-vs-signed": ({"key": b"attacker"}, {"key": KEY, "safe": True}),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("store", ["file", "dir", "sqlite"])
def test_planted_value(tmp_path, campaign, store, attack):
    """(a) the attacker's store holds a pickled exploit as a value."""
    marker = tmp_path / "PWNED"
    where = tmp_path / "store"
    written, opened = ATTACKS[attack]
    _archive(store, where, **written)["x"] = Exploit(marker)
    check(campaign, "a: value", store, marker, lambda: _read_all(_archive(store, where, **opened)))


@pytest.mark.parametrize(
    "victim", [{"serializer": "safe", "safe": True}, {"key": KEY, "safe": True}]
)
def test_planted_directory_entry(tmp_path, campaign, victim):
    """(b) an entry file of the attacker's directory archive moved into the victim's."""
    marker = tmp_path / "PWNED"
    archive = _archive("dir", tmp_path / "victim", **victim)
    archive["x"] = 1
    forger = _archive("dir", tmp_path / "forger")
    forger["x"] = Exploit(marker)
    os.replace(forger._getdir("x"), archive._getdir("x"))
    check(campaign, "b: entry", "dir", marker, lambda: _read_all(archive))


@pytest.mark.parametrize(
    "victim", [{"serializer": "safe", "safe": True}, {"key": KEY, "safe": True}]
)
def test_planted_sql_row(tmp_path, campaign, victim):
    """(c) the attacker copies a row holding a pickled exploit into the victim's table."""
    import sqlalchemy as sa

    marker = tmp_path / "PWNED"
    db = tmp_path / "db.sqlite"
    archive = _archive("sqlite", db, **victim)
    archive["x"] = 1
    archive.close()
    from klepto.archives import sqltable_archive

    evil = sqltable_archive(f"sqlite:///{db}?table=evil", cached=False, key=victim.get("key"))
    evil["x"] = 1  # the victim's key digest, with a real pickle under an envelope
    evil.close()
    engine = sa.create_engine(f"sqlite:///{db}", poolclass=sa.pool.NullPool)
    from klepto.integrity import seal

    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE memo SET vbytes = ?", (seal(pickle.dumps(Exploit(marker))),))
    engine.dispose()
    victim_archive = _archive("sqlite", db, **victim)
    check(campaign, "c: row", "sqlite", marker, lambda: _read_all(victim_archive))


def test_planted_record_in_an_operation_store(tmp_path, campaign):
    """(d) a record holding a pickle appended to an operation store's record file."""
    from klepto.logs.oplog import StoreRoot, safe_load
    from klepto.records import RecordFile

    marker = tmp_path / "PWNED"
    where = str(tmp_path / "runs.oplog")
    root = StoreRoot(where)
    root["a"] = 1
    root.close()
    with RecordFile(where, "a") as file:
        file.append(pickle.dumps(Exploit(marker)))
        file.commit()
    check(campaign, "d: log record", "oplog", marker, lambda: safe_load(where))


def test_planted_record_in_a_record_file(tmp_path, campaign):
    """(d) a record file returns records as bytes: a pickle in it is never loaded."""
    from klepto.records import RecordFile

    marker = tmp_path / "PWNED"
    where = str(tmp_path / "log.krf")
    with RecordFile(where, "a") as file:
        file.append(pickle.dumps(Exploit(marker)))
        file.commit()
    with RecordFile(where) as reader, campaign.run("E4", "record (d: log record)"):
        assert isinstance(reader[0], bytes)
        assert not marker.exists()


def _checkpoint_attack(where: str, marker: Path, what: str, key: bytes | None) -> None:
    from klepto.logs import Transactional

    with Transactional(where, key=key) as t:  # the attacker: pickles, another key or none
        t.recover(create=dict)
        if what == "checkpoint":
            t.checkpoint(Exploit(marker))
        else:
            t.log(Exploit(marker))


@pytest.mark.parametrize("what", ["checkpoint", "log entry"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_planted_checkpoint_or_log_entry(tmp_path, campaign, what, attack):
    """(d) a log entry and (e) a checkpoint holding a pickled exploit."""
    from klepto.logs import Transactional

    marker = tmp_path / "PWNED"
    where = str(tmp_path / "run")
    written, opened = ATTACKS[attack]
    _checkpoint_attack(where, marker, what, written.get("key"))
    if "key" not in opened:
        opened = {**opened, "serializer": "safe"}

    def load():
        with Transactional(where, **opened) as t:
            t.recover(apply=lambda state, item: item)

    vector = "e: checkpoint" if what == "checkpoint" else "d: log record"
    check(campaign, vector, "checkpoint", marker, load)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_planted_branch_commit(tmp_path, campaign, attack):
    """(d) a commit of a branching log whose value is a pickled exploit."""
    from klepto.logs import BranchLog, Set

    marker = tmp_path / "PWNED"
    where = tmp_path / "tlog"
    written, opened = ATTACKS[attack]
    log = BranchLog(_archive("dir", where, **written))
    log.push(log.create_branch(), Set("x", Exploit(marker)))

    def load():
        dict(BranchLog(_archive("dir", where, **opened)).view(0))

    check(campaign, "d: log record", "branches", marker, load)


@pytest.mark.parametrize("store", ["file", "dir", "sqlite", "checkpoint"])
def test_key_is_not_stored_with_the_data(tmp_path, campaign, store):
    """The HMAC key is given by the caller and never written into the store."""
    from klepto.logs import Transactional

    if store == "checkpoint":
        with Transactional(str(tmp_path / "run"), key=KEY) as t:
            t.recover(create=dict)
            t.log(1)
    else:
        _archive(store, tmp_path / "store", key=KEY)["x"] = 1
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    with campaign.run("E4", f"{store} (key not stored)"):
        assert files and not [p for p in files if KEY in p.read_bytes()]
