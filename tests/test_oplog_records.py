"""The operation store's records (format version 2): one operation per commit is one sealed
record of the record file; a float appended to a list is a compact record."""

from __future__ import annotations

import json
import math
import struct

import pytest

from klepto.errors import CorruptRecordError
from klepto.logs import export, open_store, safe_load
from klepto.logs._opreplay import FORMAT
from klepto.records import RecordFile


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store.oplog")


def stored(path) -> list[bytes]:
    with RecordFile(path) as file:
        return list(file)


def test_float_appends_are_compact_records(path):
    with open_store(path) as store:
        store["losses"] = []
        for value in (0.5, -1e300, 2.0**-1074, 3):
            store["losses"].append(value)
    records = stored(path)
    assert records[1] == b"\x01" + struct.pack("<d", 0.5) + b'["losses"]'
    assert records[2][0] == records[3][0] == 1 and records[4] == b'[["app",["losses"],3]]'
    assert safe_load(path) == {"losses": [0.5, -1e300, 2.0**-1074, 3]}
    with RecordFile(path) as file:
        assert json.loads(file.get_metadata()) == {"format": FORMAT, "version": 2}


def test_compact_records_with_any_path_and_non_finite_values(path):
    with open_store(path) as store:
        store[(1, 2)] = {"runs": [[]]}  # a tuple key: its path step is an encoded key
        inner = store[(1, 2)]["runs"][0]
        for value in (1.5, float("nan"), float("inf"), -0.0):
            inner.append(value)
        memory = [*inner]
    state = safe_load(path)
    loaded = state[(1, 2)]["runs"][0]
    assert loaded[0] == 1.5 and math.isnan(loaded[1]) and loaded[2:] == memory[2:]
    assert math.copysign(1, loaded[3]) == -1.0


def test_a_damaged_compact_record_is_reported(path):
    with open_store(path) as store:
        store["l"] = []
        store["l"].append(0.25)
    with RecordFile(path, "a") as file:  # the path names no list: the log is inconsistent
        file.commit_record(b"\x01" + struct.pack("<d", 1.0) + b'["missing"]')
    with pytest.raises(CorruptRecordError, match="compact record 2"):
        safe_load(path)


def test_exports_render_compact_records(path, tmp_path):
    with open_store(path) as store:
        store["l"] = []
        store["l"].append(0.125)
    lines = tmp_path / "ops.jsonl"
    source = tmp_path / "ops.py"
    assert export(path, lines) == 2 and export(path, source, format="py") >= 2
    assert lines.read_text().splitlines()[-1] == '["app",["l"],0.125]'
    assert "store['l'].append(0.125)" in source.read_text()


def test_a_version_1_store_is_continued_as_version_1(path):
    meta = json.dumps({"format": FORMAT, "version": 1}).encode()
    with RecordFile(path, "a", metadata=meta) as file:
        file.append(b'[["set",[],"l",[]]]')
        file.commit()
    with open_store(path) as store:
        store["l"].append(0.5)
    assert stored(path)[-1] == b'[["app",["l"],0.5]]'  # JSON: older readers can read it
    assert safe_load(path) == {"l": [0.5]}


def test_one_operation_per_commit_is_one_sealed_record(path):
    with open_store(path) as store:
        store["l"] = []
        with RecordFile(path) as file:
            size = file.committed_count
        for i in range(1000):
            store["l"].append(i / 3)
    with RecordFile(path) as file:
        assert file.commit_seq >= 1000 and len(file) == size + 1000
        blocks = file.verify().blocks
    assert blocks < 1100  # one block per operation, and a few full commits
    assert safe_load(path)["l"] == [i / 3 for i in range(1000)]
