"""D4 for the stores whose own tests do not inject I/O errors yet: the directory archive and
the branching log kept in one (the record file, file archive, checkpoint log and operation
store have theirs), and SQLite at the driver (its I/O is in C, so the error is injected
where klepto sees it: a statement failing with SQLite's ``disk I/O error``).

``EIO`` at the n-th system call, for n = 1, 2, ... until an operation runs clean: the error
surfaces, the store reopens as before or after the operation, and the next one works.
"""

from __future__ import annotations

import errno
import sqlite3

import pytest

from tests._io_inject import Inject

pytestmark = pytest.mark.faults


class FailingCalls(Inject):
    """EIO at the n-th file-system call, also the vectored and renaming ones a directory
    archive makes."""

    NAMES = (*Inject.NAMES, "writev", "pwrite", "rename")


def _dir(where: str):
    from klepto.archives import dir_archive

    return dir_archive(where, cached=False, durable=True)


def _set(archive) -> None:
    archive["k3"] = "new value"


def _delete(archive) -> None:
    del archive["k4"]


def _push(archive) -> None:
    from klepto.logs import BranchLog, Set

    BranchLog(archive).push(0, Set("k3", "new value"))


def _state(archive, operation) -> dict:
    if operation is _push:
        from klepto.logs import BranchLog

        return dict(BranchLog(archive).view(0))
    return archive.__asdict__()


def _prepare(where: str, operation) -> None:
    archive = _dir(where)
    if operation is _push:
        from klepto.logs import BranchLog, Set

        log = BranchLog(archive)
        log.push(log.create_branch(), [Set(f"k{i}", i) for i in range(6)])
    else:
        archive.update({f"k{i}": i for i in range(6)})
    archive.close()


CASES = {
    "dir-set": ("dir", _set),
    "dir-delete": ("dir", _delete),
    "branches-push": ("branches", _push),
}


@pytest.mark.parametrize("case", list(CASES))
def test_io_error_at_every_call(tmp_path, monkeypatch, campaign, case):
    store, operation = CASES[case]
    problems, n = [], 0
    for n in range(1, 300):
        where = str(tmp_path / f"s{n}")
        _prepare(where, operation)
        archive = _dir(where)
        before = _state(archive, operation)
        raised = False
        with monkeypatch.context() as patch:
            injected = FailingCalls(patch, n)
            try:
                operation(archive)
            except OSError as exc:
                raised = exc.errno == errno.EIO or problems.append(f"n={n}: {exc!r}")
        after_archive = _dir(where)
        found = _state(after_archive, operation)
        operation(after_archive) if operation is not _delete or "k4" in found else None
        done = _state(after_archive, operation)
        if raised and found not in (before, done):
            problems.append(f"n={n}: neither the state before nor after")
        if not raised and found != done:
            problems.append(f"n={n}: succeeded but the change is not stored")
        after_archive["next"] = n
        if _dir(where)["next"] != n:
            problems.append(f"n={n}: the next write failed")
        if injected.count < n:
            break
    campaign.record("D4", store, n, problems)
    assert problems == []
    assert n > 1 and injected.count < n, "no call failed, or the operation never ran clean"


# --- SQLite: a statement fails with SQLite's I/O error ----------------------------------------
def test_sqlite_io_error_at_every_statement(tmp_path, monkeypatch, campaign):
    """The n-th statement of an ``update()`` (one transaction) fails: the error surfaces,
    the table is as before (rolled back), and the next write works."""
    from sqlalchemy import event

    from klepto.archives import sqltable_archive

    url = f"sqlite:///{tmp_path}/io.db?table=memo"
    archive = sqltable_archive(url, cached=False)
    archive.update({f"k{i}": i for i in range(6)})
    before = archive.__asdict__()
    engine = archive._connector.engine if hasattr(archive._connector, "engine") else None
    if engine is None:
        pytest.skip("the SQL archive exposes no engine to inject into")
    problems, n, fired = [], 0, [0]
    for n in range(1, 50):
        fired[0] = 0

        def fail(conn, cursor, statement, parameters, context, executemany, n=n):
            fired[0] += 1
            if fired[0] == n:
                raise sqlite3.OperationalError("disk I/O error")

        event.listen(engine, "before_cursor_execute", fail)
        try:
            archive.update({f"k{i}": -i for i in range(6)} | {"new": n})
            raised = False
        except Exception as exc:  # the error must surface as some exception, recorded below
            raised = "I/O" in str(exc) or problems.append(f"n={n}: {exc!r}")
        finally:
            event.remove(engine, "before_cursor_execute", fail)
        found = sqltable_archive(url, cached=False).__asdict__()
        if raised and found != before:
            problems.append(f"n={n}: a failed update left part of its writes")
        archive.update(before)
        for key in set(archive) - set(before):
            del archive[key]
        if not raised:
            break
    campaign.record("D4", "sqlite", n, problems)
    assert problems == []
    assert n > 1, "no statement of the update was ever made to fail"
