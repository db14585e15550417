"""Readers in other processes while a writer keeps compacting a file_archive: every read
sees every key with a whole value (never a vanished file, a missing key or an error).

Compaction replaces the file with ``os.replace``; a reader holding the old file keeps a
consistent view until its next operation, which notices the replacement and reopens.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from klepto.archives import file_archive

pytestmark = pytest.mark.faults

KEYS = 200


def _writer(path: str, rounds: int, ready: list[str]) -> None:
    archive = file_archive(path, cached=False, compact_ratio=None)
    while not all(os.path.exists(name) for name in ready):  # readers are reading
        time.sleep(0.01)
    for version in range(1, rounds + 1):
        archive.update({k: (k, version, "v" * (k % 50)) for k in range(KEYS)})
        if version % 2:
            # A tombstone and the key's return in one commit: readers must never see the
            # gap (two separate commits would let them, legitimately).
            with archive.transaction():
                del archive[0]
                archive[0] = (0, version, "")
        archive.compact()


def _reader(path: str, stop: str, out: str) -> None:
    archive = file_archive(path, cached=False)
    report = {"rounds": 0, "short": 0, "bad": 0, "errors": [], "files": set()}
    Path(out + ".ready").touch()
    done = False
    while not done:
        done = os.path.exists(stop)  # always finish a whole round after the stop signal
        try:
            keys = list(archive)
            values = {key: archive[key] for key in keys}
        except Exception as exc:  # every failure is a violation to report
            report["errors"].append(f"{type(exc).__name__}: {exc}")
            continue
        report["short"] += len(keys) != KEYS or len(archive) != KEYS
        report["bad"] += sum(
            not (isinstance(v, tuple) and v[0] == k and len(v) == 3) for k, v in values.items()
        )
        report["files"].add(archive._store.main.file_id)
        report["rounds"] += 1
    report["files"] = len(report["files"])
    Path(out).write_text(json.dumps(report))


def test_readers_follow_compactions(tmp_path):
    path = str(tmp_path / "memo.pkl")
    file_archive(path, cached=False).update({k: (k, 0, "") for k in range(KEYS)})
    stop = str(tmp_path / "stop")
    context = multiprocessing.get_context("spawn")
    outs = [str(tmp_path / f"reader{i}.json") for i in range(2)]
    readers = [context.Process(target=_reader, args=(path, stop, out)) for out in outs]
    for reader in readers:
        reader.start()
    writer = context.Process(target=_writer, args=(path, 40, [out + ".ready" for out in outs]))
    writer.start()
    writer.join(300)
    Path(stop).touch()
    for reader in readers:
        reader.join(120)
    assert writer.exitcode == 0 and [r.exitcode for r in readers] == [0, 0]
    for out in outs:
        report = json.loads(Path(out).read_text())
        assert report["errors"] == [] and report["rounds"] >= 1, report
        assert (report["short"], report["bad"]) == (0, 0), report
    assert max(json.loads(Path(out).read_text())["files"] for out in outs) >= 2  # saw swaps
    final = file_archive(path, cached=False)
    assert len(final) == KEYS and final[5] == (5, 40, "v" * 5)
