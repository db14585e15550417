"""Salvage (the record file's explicit recovery mode, B1): after mid-file damage, the copy
holds the longest intact prefix of whole commits, byte-exact, with their metadata, and a
warning names what was dropped -- never silently. Also for a file archive (a record file
underneath) and through ``klepto salvage``.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

import pytest

from klepto.cli import main
from klepto.records import RecordFile
from tests.faults._harness import FAULTS, damage_bytes
from tests.faults._record_worker import Plan

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    plan = Plan(41, 1200)
    path = tmp_path_factory.mktemp("salvage") / "source.krf"
    with RecordFile(str(path), "a") as f:
        for boundary in plan.boundaries:
            f.extend(plan.record(i) for i in range(len(f), boundary))
            f.set_metadata(b"count=%d" % boundary)
            f.commit()
    return plan, path.read_bytes()


def salvage_trial(tmp_path: Path, plan: Plan, data: bytes, caplog, name: str) -> str:
    """'complete', 'prefix' (warned) or a problem."""
    damaged, copy = tmp_path / f"{name}.krf", tmp_path / f"{name}-copy.krf"
    damaged.write_bytes(data)
    caplog.clear()
    report = RecordFile.salvage(damaged, copy)
    with RecordFile(copy) as reader:
        count = len(reader)
        if count not in plan.boundary_set or count != report.records:
            return f"WRONG: {count} records is not a commit boundary"
        if any(record != plan.record(i) for i, record in enumerate(reader)):
            return "WRONG: a record differs"
        if reader.get_metadata() != (b"count=%d" % count if count else None):
            return "WRONG: metadata"
        if not reader.verify().ok:
            return "the copy does not verify"
    warned = any(
        r.levelno >= logging.WARNING and "salvage" in r.getMessage() for r in caplog.records
    )
    if count == plan.boundaries[-1]:
        return "complete" if report.complete or warned else "SILENT"
    return "prefix" if warned and not report.complete else "SILENT"


@pytest.mark.parametrize("trials", [24, pytest.param(200, marks=[pytest.mark.full])])
def test_salvage_keeps_a_whole_commit_prefix(tmp_path, source, caplog, campaign, trials):
    plan, data = source
    rng = random.Random(trials)
    outcomes: Counter = Counter()
    for trial in range(trials):
        fault = FAULTS[trial % 4]
        outcome = salvage_trial(tmp_path, plan, damage_bytes(data, fault, rng), caplog, f"t{trial}")
        outcomes[outcome] += 1
        for path in tmp_path.iterdir():
            path.unlink()
    bad = {k: n for k, n in outcomes.items() if k not in ("complete", "prefix")}
    campaign.record("B1", "record-salvage", trials, bad)
    assert bad == {}, dict(outcomes)
    assert outcomes["prefix"] >= trials // 4, dict(outcomes)


def test_salvage_of_an_intact_file_keeps_everything(tmp_path, source, caplog):
    plan, data = source
    (tmp_path / "good.krf").write_bytes(data)
    report = RecordFile.salvage(tmp_path / "good.krf", tmp_path / "copy.krf")
    assert report.complete and report.records == plan.boundaries[-1]
    assert report.commits == len(plan.boundaries)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(FileExistsError):
        RecordFile.salvage(tmp_path / "good.krf", tmp_path / "copy.krf")


def test_salvage_of_a_file_archive_and_the_command(tmp_path, caplog, capsys, campaign):
    """A flipped byte mid-file: the archive refuses to open; salvage gives the writes before
    it, the file archive opens the copy, and the command says what was dropped (status 1)."""
    from klepto.archives import file_archive
    from klepto.errors import CorruptionError

    path = tmp_path / "memo.pkl"
    archive = file_archive(str(path), cached=False)
    for i in range(40):
        archive[i] = "v" * 500 + str(i)
    archive.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    Path(str(path) + ".idx").unlink(missing_ok=True)
    with campaign.run("B2", "file-salvage"):
        with pytest.raises(CorruptionError):
            file_archive(str(path), cached=False).__asdict__()
        assert main(["salvage", str(path), str(tmp_path / "copy.pkl")]) == 1
        assert "dropped" in capsys.readouterr().out
        found = file_archive(str(tmp_path / "copy.pkl"), cached=False).__asdict__()
        assert 0 < len(found) < 40
        assert found == {i: "v" * 500 + str(i) for i in range(len(found))}
