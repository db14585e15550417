"""The ``klepto`` command driven as a person drives it: a subprocess on real files, real exit
statuses, ``--json`` output parsed."""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from klepto._cli_output import ProgressBar, parse_key
from klepto.archives import dir_archive, file_archive, sqltable_archive
from klepto.records import RecordFile
from tests import _classic_writer as classic

ROOT = pathlib.Path(__file__).resolve().parent.parent


def klepto(*args: str, cwd: pathlib.Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "klepto", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def as_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def results(tmp_path):
    archive = dir_archive(str(tmp_path / "results"), cached=False)
    archive.update({"x": 42, 1: "one", "1": "the string", (1, 2): [3, 4]})
    archive.close()
    return tmp_path


# --- read commands -----------------------------------------------------------------------
def test_info_ls_get_with_json(results):
    info = as_json(klepto("info", "results", "--json", cwd=results))
    assert info["kind"] == "dir"
    assert info["entries"] == 4
    assert info["format"] == 1
    assert info["bytes"] > 0
    assert info["settings"]["serializer"] == "dill"
    assert info["last_commit"].endswith("+00:00")
    keys = as_json(klepto("ls", "results", "--json", cwd=results))
    assert sorted(map(json.dumps, keys)) == sorted(
        map(json.dumps, ["x", 1, "1", {"$tuple": [1, 2]}])
    )
    assert len(as_json(klepto("ls", "results", "--limit", "2", "--json", cwd=results))) == 2
    got = as_json(klepto("get", "results", "(1, 2)", "--json", cwd=results))
    assert got == {"key": {"$tuple": [1, 2]}, "value": [3, 4]}


def test_keys_are_literals_unless_raw(results):
    assert klepto("get", "results", "1", cwd=results).stdout == "'one'\n"
    assert klepto("get", "results", "'1'", cwd=results).stdout == "'the string'\n"
    assert klepto("get", "results", "x", cwd=results).stdout == "42\n"
    assert klepto("get", "results", "1", "--raw-key", cwd=results).stdout == "'the string'\n"
    listed = klepto("ls", "results", cwd=results).stdout.splitlines()
    assert {ast.literal_eval(line) for line in listed} == {"x", 1, "1", (1, 2)}


def test_parse_key():
    assert parse_key("1") == 1
    assert parse_key("'1'") == "1"
    assert parse_key("(1, 'a')") == (1, "a")
    assert parse_key("results") == "results"
    assert parse_key("a b") == "a b"
    assert parse_key("1", raw=True) == "1"


def test_rm(results):
    assert klepto("rm", "results", "x", cwd=results).returncode == 0
    assert klepto("get", "results", "x", cwd=results).returncode == 1
    assert dir_archive(str(results / "results"), cached=False).get("x") is None


# --- exit statuses and errors --------------------------------------------------------------
def test_exit_statuses_and_one_line_errors(results):
    missing = klepto("get", "results", "nope", cwd=results)
    assert (missing.returncode, missing.stderr) == (1, "klepto get: not found: 'nope'\n")
    assert klepto("info", "nowhere", cwd=results).returncode == 1
    assert klepto("ls", cwd=results).returncode == 2  # argparse usage error
    unsupported = klepto("tail", "results", cwd=results)
    assert unsupported.returncode == 2
    assert "not available for a dir store" in unsupported.stderr
    (results / "notes.txt").write_text("hello\n")
    other = klepto("info", "notes.txt", cwd=results)
    assert other.returncode == 3
    assert other.stderr.count("\n") == 1 and "not a klepto store" in other.stderr
    debug = klepto("info", "notes.txt", "--debug", cwd=results)
    assert "Traceback" in debug.stderr and debug.returncode == 3


def test_classic_archive_is_pointed_to_migrate(tmp_path):
    classic.write_dir_archive(str(tmp_path / "old"), {"a": 1}, protocol="json")
    found = klepto("info", "old", cwd=tmp_path)
    assert found.returncode == 3
    assert "klepto migrate" in found.stderr


# --- verify -----------------------------------------------------------------------------------
def _flip(path: pathlib.Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_dir_archive_reports_the_damaged_entry(results):
    assert as_json(klepto("verify", "results", "--json", cwd=results))["ok"] is True
    entry = dir_archive(str(results / "results"), cached=False)._getdir("x")
    _flip(pathlib.Path(entry), os.path.getsize(entry) - 2)
    found = klepto("verify", "results", "--json", cwd=results)
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert report["ok"] is False and report["checked"] == 5  # settings + 4 entries
    assert [p["where"] for p in report["problems"]] == [entry]
    assert "checksum" in report["problems"][0]["reason"]
    text = klepto("verify", "results", cwd=results)
    assert text.returncode == 1
    assert "DAMAGED: 1 problem(s)" in text.stdout and entry in text.stdout


def test_verify_reports_damaged_settings(results):
    settings = results / "results" / ".klepto"
    settings.write_text(settings.read_text().replace('"dill"', '"dilx"'))
    found = klepto("verify", "results", "--json", cwd=results)
    assert found.returncode == 1
    (problem,) = json.loads(found.stdout)["problems"]
    assert problem["where"] == str(settings) and "checksum" in problem["reason"]
    assert klepto("info", "results", cwd=results).returncode == 3


def test_verify_record_file_names_the_offset(tmp_path):
    with RecordFile(tmp_path / "log.krf", "a", compression=None) as records:
        records.extend([b"first record", b"second record"])
        records.commit()
    assert klepto("verify", "log.krf", cwd=tmp_path).returncode == 0
    _flip(tmp_path / "log.krf", 4096 + 40)  # inside the first frame's body
    found = klepto("verify", "log.krf", "--json", cwd=tmp_path)
    assert found.returncode == 1
    problem = json.loads(found.stdout)["problems"][0]
    assert problem["where"].endswith("log.krf at offset 4096")
    assert "checksum" in problem["reason"]


def test_verify_sqlite_archive_names_the_row(tmp_path):
    archive = sqltable_archive(f"sqlite:///{tmp_path}/r.db?table=memo", cached=False)
    archive.update({"a": 1, "b": 2})
    digest = archive._ready()[1].digest("b")
    archive.close()
    with sqlite3.connect(tmp_path / "r.db") as conn:
        (blob,) = conn.execute("SELECT vbytes FROM memo WHERE kdigest = ?", (digest,)).fetchone()
        damaged = bytes(blob[:-1]) + bytes([blob[-1] ^ 1])
        conn.execute("UPDATE memo SET vbytes = ? WHERE kdigest = ?", (damaged, digest))
    found = klepto("verify", "r.db", "--json", cwd=tmp_path)
    assert found.returncode == 1
    (problem,) = json.loads(found.stdout)["problems"]
    assert digest in problem["where"] and "memo" in problem["where"]


# --- export, copy, compact ---------------------------------------------------------------------
def test_export_formats(results):
    lines = klepto("export", "results", cwd=results).stdout.splitlines()
    assert {json.dumps(json.loads(line)["key"]) for line in lines} == {
        '"x"',
        "1",
        '"1"',
        '{"$tuple": [1, 2]}',
    }
    source = klepto("export", "results", "--format", "py", cwd=results).stdout
    memo = ast.literal_eval(source.split("memo = ", 1)[1])
    assert memo == {"x": 42, 1: "one", "1": "the string", (1, 2): [3, 4]}
    written = klepto("export", "results", "--format", "csv", "-o", "out.csv", cwd=results)
    assert written.returncode == 0 and "exported 4 entries" in written.stderr
    rows = list(csv.reader(io.StringIO((results / "out.csv").read_text())))
    assert rows[0] == ["key", "value"] and len(rows) == 5


def test_copy_between_kinds(results):
    steps = [
        ("results", "sqlite:///copy.db?table=t"),
        ("copy.db", "again.pkl"),
        ("again.pkl", "d2"),
    ]
    for src, dst in steps:
        copied = as_json(klepto("copy", src, dst, "--json", cwd=results))
        assert copied["copied"] == 4
    assert as_json(klepto("info", "again.pkl", "--json", cwd=results))["kind"] == "file"
    final = dir_archive(str(results / "d2"), cached=False)
    assert final.__asdict__() == {"x": 42, 1: "one", "1": "the string", (1, 2): [3, 4]}


def test_compact(tmp_path):
    archive = file_archive(str(tmp_path / "f.pkl"), cached=False, compact_ratio=None)
    for i in range(50):
        archive["k"] = "x" * 1000 + str(i)
    archive.close()
    before = os.path.getsize(tmp_path / "f.pkl")
    assert klepto("compact", "f.pkl", cwd=tmp_path).returncode == 0
    assert os.path.getsize(tmp_path / "f.pkl") < before
    assert klepto("get", "f.pkl", "k", cwd=tmp_path).stdout == repr("x" * 1000 + "49") + "\n"
    sqltable_archive(f"sqlite:///{tmp_path}/r.db?table=memo", cached=False)["a"] = 1
    assert as_json(klepto("compact", "r.db", "--json", cwd=tmp_path)) == {"vacuumed": True}


# --- record files and logs ---------------------------------------------------------------------
def test_tail_and_follow_a_record_file(tmp_path):
    path = tmp_path / "log.krf"
    with RecordFile(path, "a") as records:
        records.extend([b"r0", b"r1", b"r2"])
        records.commit()
    tail = klepto("tail", "log.krf", "-n", "2", "--json", cwd=tmp_path).stdout.splitlines()
    assert [json.loads(line) for line in tail] == [
        {"record": 1, "data": "r1"},
        {"record": 2, "data": "r2"},
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "klepto", "follow", "log.krf", "--json"]
    command += ["--timeout", "1.5", "--interval", "0.05", "--start", "2"]
    follower = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True, env=env)
    with RecordFile(path, "a") as records:
        records.append(b"new")
        records.commit()
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"record": 2, "data": "r2"},
        {"record": 3, "data": "new"},
    ]


def test_operation_store(tmp_path):
    from klepto.logs.oplog import create_file_store

    store = create_file_store("run", suffix="", prefix=str(tmp_path) + "/", truncate=True)
    store["losses"] = []
    store["losses"].append(0.5)
    store["name"] = "trial"
    store.close()
    info = as_json(klepto("info", "run.oplog", "--json", cwd=tmp_path))
    assert (info["kind"], info["entries"], info["records"]) == ("oplog", 2, 3)
    assert as_json(klepto("ls", "run.oplog", "--json", cwd=tmp_path)) == ["losses", "name"]
    assert klepto("get", "run.oplog", "losses", cwd=tmp_path).stdout == "[0.5]\n"
    ops = [
        json.loads(x)
        for x in klepto("tail", "run.oplog", "--json", cwd=tmp_path).stdout.split("\n")
        if x
    ]
    assert [op["record"] for op in ops] == [0, 1, 2]
    assert as_json(klepto("verify", "run.oplog", "--json", cwd=tmp_path))["ok"] is True


def test_branching_log_in_a_dir_archive(tmp_path):
    from klepto.logs import BranchLog, Set

    log = BranchLog(dir_archive(str(tmp_path / "exp"), cached=False))
    main = log.create_branch()
    log.push(main, Set("lr", 0.1))
    log.push(main, Set("epochs", 10))
    trial = log.fork(main, at=1)
    log.push(trial, Set("lr", 0.01))
    info = as_json(klepto("info", "exp", "--json", cwd=tmp_path))
    assert info["kind"] == "tlog" and info["entries"] == 3
    assert [b["head"] for b in info["branches"]] == [2, 2]
    assert klepto("get", "exp", "lr", cwd=tmp_path).stdout == "0.1\n"
    assert klepto("get", "exp", "lr", "--branch", "1", cwd=tmp_path).stdout == "0.01\n"
    tail = klepto("tail", "exp", "--branch", "1", "--json", cwd=tmp_path).stdout.splitlines()
    assert [json.loads(line)["txns"] for line in tail] == [
        [["set", "lr", 0.1]],
        [["set", "lr", 0.01]],
    ]
    assert as_json(klepto("verify", "exp", "--json", cwd=tmp_path))["ok"] is True
    raw = as_json(klepto("info", "exp", "--kind", "dir", "--json", cwd=tmp_path))
    assert raw["kind"] == "dir" and raw["entries"] > 3


def test_checkpoints_and_their_log(tmp_path):
    from klepto.logs.checkpoint import Transactional

    run = Transactional(str(tmp_path / "run"))
    state = run.recover(create=list, apply=lambda s, v: [*s, v])
    for i in range(5):
        run.log(i)
        state.append(i)
        if i == 2:
            run.checkpoint(state)
    run.close()
    info = as_json(klepto("info", "run", "--json", cwd=tmp_path))
    assert info["kind"] == "checkpoint" and info["entries"] == 2  # logged after the newest
    assert [c["seq"] for c in info["checkpoints"]] == [0, 3]
    assert as_json(klepto("ls", "run", "--json", cwd=tmp_path)) == [1, 2]
    tail = klepto("tail", "run", "--json", cwd=tmp_path).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in tail] == [4, 5]
    assert as_json(klepto("verify", "run", "--json", cwd=tmp_path))["ok"] is True


# --- read-only commands never wait for a writer --------------------------------------------------
_HOLD_RECORD_LOCK = """
import sys, time
from klepto.records import RecordFile
with RecordFile(sys.argv[1], "a") as f:
    print("locked", flush=True)
    time.sleep(60)
"""

_HOLD_FILE_ARCHIVE_LOCK = """
import sys, time
from klepto.archives import file_archive
a = file_archive(sys.argv[1], cached=False)
with a.transaction():
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("holder", ["records", "file"])
def test_read_commands_do_not_take_the_write_lock(tmp_path, holder):
    if holder == "records":
        with RecordFile(tmp_path / "data.krf", "a") as records:
            records.append(b"r0")
            records.commit()
        name, script, key = "data.krf", _HOLD_RECORD_LOCK, "0"
    else:
        file_archive(str(tmp_path / "data.pkl"), cached=False)["k"] = "v"
        name, script, key = "data.pkl", _HOLD_FILE_ARCHIVE_LOCK, "k"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen(
        [sys.executable, "-c", script, name],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert writer.stdout.readline().strip() == "locked"
        for command in (["ls", name], ["get", name, key], ["info", name], ["verify", name]):
            result = klepto(*command, cwd=tmp_path, timeout=20)
            assert result.returncode == 0, (command, result.stderr)
    finally:
        writer.kill()
        writer.wait()


# --- progress bar ------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_not_quiet():
    screen = _Terminal()
    with ProgressBar("verify", stream=screen) as bar:
        bar(5, 10)
        bar(10, 10)
    assert "verify [" in screen.getvalue() and "10/10" in screen.getvalue()
    assert screen.getvalue().endswith("\n")
    for stream, quiet in ((io.StringIO(), False), (_Terminal(), True)):
        with ProgressBar("verify", stream=stream, quiet=quiet) as bar:
            bar(10, 10)
        assert stream.getvalue() == ""


def test_progress_bar_on_a_terminal(results):
    import pty

    main, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "klepto", "verify", "results"],
            cwd=results,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=env,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
        if terminal >= 0:
            os.close(terminal)
    assert done.returncode == 0
    assert b"verify [" in shown and b"5/5" in shown
    quiet = klepto("verify", "results", "--quiet", cwd=results)
    assert quiet.stderr == ""


def test_no_progress_bar_in_a_pipe(results):
    found = klepto("verify", "results", cwd=results)
    assert found.stderr == ""


# --- migrate -------------------------------------------------------------------------------------
MEMO = {"a": 1, 2: [1, 2], (1, "x"): {"z": None}, "a-b": "dash"}
LITERAL = {"a": 1, "b": (1, 2), 3: "x"}


def _classic_layouts(tmp_path: pathlib.Path) -> dict:
    arrays = {**MEMO, "arr": np.arange(10.0), "big": np.arange(2000).reshape(40, 50)}
    classic.write_file_archive(str(tmp_path / "memo.pkl"), {**MEMO, "f": len})
    classic.write_file_archive(str(tmp_path / "memo.py"), LITERAL, serialized=False)
    classic.write_file_archive(str(tmp_path / "memo.json"), {"a": 1}, protocol="json")
    classic.write_dir_archive(str(tmp_path / "dplain"), MEMO)
    classic.write_dir_archive(str(tmp_path / "dfast"), arrays, fast=True)
    classic.write_dir_archive(str(tmp_path / "dzf"), arrays, compression=5)
    classic.write_dir_archive(str(tmp_path / "dlit"), LITERAL, serialized=False)
    classic.write_dir_archive(str(tmp_path / "djson"), {"a": 1, "b": [2]}, protocol="json")
    classic.write_sqltable(f"sqlite:///{tmp_path}/table.db", "memo", {"a": 1, "b": [2]})
    classic.write_sqltable(f"sqlite:///{tmp_path}/text.db", "memo", {"a": "x"}, serialized=False)
    classic.write_sql_per_key(f"sqlite:///{tmp_path}/perkey.db", {"a": 1, "b": [2]})
    return {
        "memo.pkl": (True, {**MEMO, "f": len}),
        "memo.py": (False, LITERAL),
        "memo.json": (False, {"a": 1}),
        "dplain": (True, MEMO),
        "dfast": (True, arrays),
        "dzf": (True, arrays),
        "dlit": (False, LITERAL),
        "djson": (False, {"a": 1, "b": [2]}),
        "sqlite:///table.db?table=memo": (True, {"a": 1, "b": [2]}),
        "text.db": (False, {"a": "x"}),
        "perkey.db": (True, {"a": 1, "b": [2]}),
    }


def _same(got: dict, expected: dict) -> bool:
    if set(got) != set(expected):
        return False
    return all(
        np.array_equal(got[k], v) if isinstance(v, np.ndarray) else got[k] == v
        for k, v in expected.items()
    )


def test_migrate_every_classic_layout(tmp_path):
    layouts = _classic_layouts(tmp_path)
    for n, (old, (pickled, expected)) in enumerate(layouts.items()):
        new = f"new{n}"
        if pickled and old in ("memo.pkl", "dplain", "perkey.db"):  # one of each layout
            refused = klepto("migrate", old, new, cwd=tmp_path)
            assert refused.returncode == 2, (old, refused.stderr)
            assert "--trust" in refused.stderr and "runs whatever code" in refused.stderr
            assert not (tmp_path / new).exists() or len(dir_archive(str(tmp_path / new))) == 0
        moved = as_json(klepto("migrate", old, new, "--trust", "--json", cwd=tmp_path))
        assert moved["migrated"] == len(expected), old
        got = dir_archive(str(tmp_path / new), cached=False).__asdict__()
        assert _same(got, expected), old


def test_migrate_into_other_kinds_and_library_function(tmp_path):
    from klepto.archives import migrate_classic, sql_archive
    from klepto.errors import UnsafeDataError

    classic.write_dir_archive(str(tmp_path / "old"), MEMO)
    moved = klepto("migrate", "old", "new.pkl", "--trust", cwd=tmp_path)
    assert moved.stdout == "migrated 4 entries from old to new.pkl\n"
    assert file_archive(str(tmp_path / "new.pkl"), cached=False).__asdict__() == MEMO
    target = sql_archive(f"sqlite:///{tmp_path}/new.db", cached=False)
    with pytest.raises(UnsafeDataError, match="trust=True"):
        migrate_classic(tmp_path / "old", target)
    seen = []
    count = migrate_classic(
        tmp_path / "old", target, trust=True, progress=lambda d, t: seen.append((d, t)), batch=3
    )
    assert count == 4 and seen == [(3, 4), (4, 4)]
    assert target.__asdict__() == MEMO


def test_migrate_refuses_code_in_literal_sources(tmp_path):
    (tmp_path / "memo.py").write_text("import os\nmemo = os.getcwd()\n")
    refused = klepto("migrate", "memo.py", "new", "--trust", cwd=tmp_path)
    assert refused.returncode == 3
    assert "not a Python literal" in refused.stderr


def test_demo_still_runs(tmp_path):
    demo = klepto("demo", "--calls", "2", "--delay", "0", cwd=tmp_path)
    assert demo.returncode == 0 and "time saved" in demo.stdout


@pytest.mark.services
def test_server_archives(tmp_path, postgres_url, mariadb_url, unique_name):
    from tests.kinds.sql import drop_server_table

    source = f"{postgres_url}?table={unique_name}"
    target = f"{mariadb_url}?table={unique_name}"
    try:
        sqltable_archive(source, cached=False).update({"a": 1, (1, 2): [3]})
        info = as_json(klepto("info", source, "--json", cwd=tmp_path))
        assert (info["kind"], info["entries"], info["table"]) == ("sqltable", 2, unique_name)
        assert as_json(klepto("copy", source, target, "--json", cwd=tmp_path))["copied"] == 2
        assert as_json(klepto("verify", target, "--json", cwd=tmp_path))["ok"] is True
        assert klepto("get", target, "(1, 2)", cwd=tmp_path).stdout == "[3]\n"
    finally:
        drop_server_table(postgres_url, unique_name)
        drop_server_table(mariadb_url, unique_name)
