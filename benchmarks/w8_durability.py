"""W8: durable commits against the disk's own rate of ``write + fsync``, measured together.

The raw rate appends a 128-byte block and fsyncs it; a durable record-file commit appends a
frame and a commit record and fsyncs once. Rounds alternate between the two so that both
see the same disk weather; figures are medians over the rounds. Group commit (several
records per commit) is reported as records per second.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from benchmarks._harness import Result

NAME = "W8"
TITLE = "durability: durable commits vs raw write+fsync, group commit"
RAW = "raw write+fsync"
RECORD = b"x" * 100


def _raw_rate(path: str, ops: int, sync=os.fsync) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        started = time.perf_counter()
        for _ in range(ops):
            os.write(fd, RECORD + b"\n" * 28)
            sync(fd)
        return ops / (time.perf_counter() - started)
    finally:
        os.close(fd)
        os.remove(path)


def _durable_rate(path: str, commits: int, group: int) -> float:
    from klepto.records import RecordFile

    with RecordFile(path, "w", durability="durable") as log:
        started = time.perf_counter()
        for _ in range(commits):
            for _ in range(group):
                log.append(RECORD)
            log.commit()
        elapsed = time.perf_counter() - started
    os.remove(path)
    return commits / elapsed


def _archive_rate(path: str, commits: int, group: int) -> float:
    """Durable ``file_archive`` writes: one key per write, or ``group`` keys per update()."""
    from klepto.archives import file_archive

    archive = file_archive(path, cached=False, durable=True)
    started = time.perf_counter()
    for i in range(commits):
        if group == 1:
            archive[i] = RECORD
        else:
            archive.update({(i, k): RECORD for k in range(group)})
    elapsed = time.perf_counter() - started
    archive.__drop__()
    return commits / elapsed


def run(quick: bool = False) -> list[Result]:
    ops = 100 if quick else 400
    rounds = 3 if quick else 7
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="klepto-w8-") as directory:
        raw, log = os.path.join(directory, "raw.bin"), os.path.join(directory, "log.krf")
        archive = os.path.join(directory, "memo.pkl")
        for _ in range(rounds):
            samples.setdefault(RAW, []).append(_raw_rate(raw, ops))
            samples.setdefault("raw write+fdatasync", []).append(
                _raw_rate(raw, ops, getattr(os, "fdatasync", os.fsync))
            )
            for group in (1, 10, 100):
                rate = _durable_rate(log, ops if group < 100 else ops // 2, group)
                samples.setdefault(f"group {group}", []).append(rate)
                rate = _archive_rate(archive, ops if group < 100 else ops // 2, group)
                samples.setdefault(f"archive group {group}", []).append(rate)
    median = {name: statistics.median(values) for name, values in samples.items()}
    results = [
        Result(NAME, "durable commits/s (1 record each)", RAW, median[RAW], "ops/s"),
        Result(
            NAME,
            "durable commits/s (1 record each)",
            "raw write+fdatasync",
            median["raw write+fdatasync"],
            "ops/s",
        ),
        Result(
            NAME,
            "durable commits/s (1 record each)",
            "klepto.records durable",
            median["group 1"],
            "ops/s",
            peer=RAW,
            target=1 / 0.8,
            higher_is_better=True,
        ),
    ]
    for group in (1, 10, 100):
        results.append(
            Result(
                NAME,
                f"durable records/s, group commit of {group}",
                "klepto.records durable",
                median[f"group {group}"] * group,
                "rec/s",
                extra={"commits_per_s": median[f"group {group}"]},
            )
        )
    return results + _archive_results(median)


def _archive_results(median: dict[str, float]) -> list[Result]:
    """file_archive(durable=True): one key per write vs the raw rate; keys/s per update()."""
    impl = "klepto.file_archive durable"
    results = [
        Result(
            NAME,
            "durable commits/s (1 record each)",
            impl,
            median["archive group 1"],
            "ops/s",
            peer=RAW,
            target=1 / 0.8,
            higher_is_better=True,
        )
    ]
    for group in (1, 10, 100):
        rate = median[f"archive group {group}"]
        results.append(
            Result(
                NAME,
                f"durable keys/s, update() of {group}",
                impl,
                rate * group,
                "keys/s",
                extra={"commits_per_s": rate},
            )
        )
    return results
