"""W6: the record file against CaptureFile 1.2.0, 100k text-like records of about 100 bytes.

Both sides run the same calls through CaptureFile's API (klepto's ``CaptureFile`` facade is
a thin layer over ``RecordFile``), in the same process, alternating, with the median of
several repetitions per figure.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time

from benchmarks._harness import Result
from benchmarks._peers import optional

NAME = "W6"
TITLE = "record file vs CaptureFile 1.2.0 (100k text-like 100 B records)"
PEER = "CaptureFile 1.2.0"
KLEPTO = "klepto.records"

LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
VERBS = ["GET", "POST", "PUT", "DELETE"]
PATHS = ["/api/v1/items", "/api/v1/users", "/static/app.js", "/health", "/api/v2/orders"]
WORDS = [
    "request",
    "served",
    "cache",
    "miss",
    "hit",
    "user",
    "session",
    "token",
    "refreshed",
    "timeout",
    "retry",
]


def log_lines(count: int, seed: int = 1, size: int = 100) -> list[str]:
    """Log-line-like ASCII records, each exactly ``size`` characters."""
    rnd = random.Random(seed)
    clock = 1_700_000_000.0
    lines = []
    for _ in range(count):
        clock += rnd.expovariate(50)
        words = " ".join(rnd.choice(WORDS) for _ in range(6))
        line = (
            f"{clock:.3f} {rnd.choice(LEVELS):5} w{rnd.randrange(8)} {rnd.choice(VERBS)} "
            f"{rnd.choice(PATHS)}/{rnd.randrange(100000)} {rnd.choice([200, 200, 404, 500])} "
            f"{rnd.randrange(1, 999)}ms {words} "
            + "".join(rnd.choice("0123456789abcdef") for _ in range(40))
        )
        lines.append(line[:size].ljust(size))
    return lines


def _fresh(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    for stale in (path, path + ".lock"):
        if os.path.exists(stale):
            os.remove(stale)
    return path


def _append(cls, path: str, lines: list[str], every: int) -> float:
    started = time.perf_counter()
    log = cls(path, to_write=True)
    for i, line in enumerate(lines, 1):
        log.add_record(line)
        if i % every == 0:
            log.commit()
    log.commit()
    log.close()
    return time.perf_counter() - started


def _per_commit(cls, path: str, lines: list[str]) -> float:
    log = cls(path, to_write=True)
    samples = []
    for line in lines:
        started = time.perf_counter()
        log.add_record(line)
        log.commit()
        samples.append(time.perf_counter() - started)
    log.close()
    return statistics.median(samples)


def _iterate(cls, path: str) -> float:
    log = cls(path)
    started = time.perf_counter()
    count = sum(1 for _ in log)
    elapsed = time.perf_counter() - started
    log.close()
    assert count > 0
    return elapsed


def _random_reads(cls, path: str, count: int, lookups: int) -> float:
    log = cls(path)
    rnd = random.Random(7)
    samples = []
    for _ in range(lookups):
        n = rnd.randrange(1, count + 1)
        started = time.perf_counter()
        log.record_at(n)
        samples.append(time.perf_counter() - started)
    log.close()
    return statistics.median(samples)


def _tiny_commits(directory: str, count: int = 20_000) -> float:
    """klepto alone: median seconds of ``append(b"x" * 20); commit()`` (a sealed record)."""
    from klepto.records import RecordFile

    path = _fresh(directory, "tiny.log")
    samples = []
    with RecordFile(path, "a") as log:
        for _ in range(count):
            started = time.perf_counter()
            log.append(b"x" * 20)
            log.commit()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _measure(impls: dict, directory: str, lines: list[str], repeat: int) -> dict:
    """Every figure of every implementation, repetitions interleaved between them."""
    figures: dict = {impl: {} for impl in impls}
    for rep in range(repeat):
        for impl, cls in impls.items():
            path = _fresh(directory, f"{impl}.log")
            put = figures[impl].setdefault
            put("append", []).append(len(lines) / _append(cls, path, lines, 1000))
            put("ratio", []).append(len(lines) * len(lines[0]) / os.path.getsize(path))
            put("iterate", []).append(len(lines) / _iterate(cls, path))
            put("read", []).append(_random_reads(cls, path, len(lines), 2000 if rep else 500))
            single = _fresh(directory, f"{impl}-single.log")
            put("commit", []).append(_per_commit(cls, single, lines[:1000]))
        figures[KLEPTO].setdefault("tiny", []).append(_tiny_commits(directory))
    return {impl: {k: statistics.median(v) for k, v in f.items()} for impl, f in figures.items()}


METRICS = [
    # key, metric, unit, scale, higher is better, target (largest acceptable ratio)
    ("append", "append, commit every 1000", "rec/s", 1, True, 1 / 1.2),
    ("commit", "add + commit, 1 record per commit", "us", 1e6, False, 0.6),
    ("ratio", "compression ratio (raw / file)", "x", 1, True, 1.0),
    ("read", "random record_at, median", "us", 1e6, False, 0.25),
    ("iterate", "full iteration", "rec/s", 1, True, 1 / 1.2),
]


def run(quick: bool = False) -> list[Result]:
    from klepto.records import CaptureFile as KleptoCaptureFile

    impls = {KLEPTO: KleptoCaptureFile}
    peer = optional("CaptureFile")
    if peer is not None:
        impls[PEER] = peer.CaptureFile
    lines = log_lines(20_000 if quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="klepto-w6-") as directory:
        figures = _measure(impls, directory, lines, 2 if quick else 5)
    results = [
        Result(
            NAME,
            "append(20 B) + commit, klepto only",
            KLEPTO,
            figures[KLEPTO].pop("tiny") * 1e6,
            "us",
            extra={"records": 20_000},
        )
    ]
    for key, metric, unit, scale, higher, target in METRICS:
        for impl in impls:
            is_klepto = impl == KLEPTO
            results.append(
                Result(
                    NAME,
                    metric,
                    impl,
                    figures[impl][key] * scale,
                    unit,
                    peer=PEER if is_klepto and peer is not None else None,
                    target=target if is_klepto and peer is not None else None,
                    higher_is_better=higher,
                    extra={"records": len(lines)},
                )
            )
    return results
