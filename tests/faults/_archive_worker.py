"""Worker processes for the archive fault tests (file, directory and SQL archives):
``python -m tests.faults._archive_worker STORE COMMAND WHERE ARGS...``.

STORE is ``file``, ``dir`` or ``sql`` (WHERE is then an SQLAlchemy URL with ``?table=``).
Every worker prints one line per acknowledged operation and flushes it, so the harness knows
exactly what was acknowledged when it sends SIGKILL. Operation sequences derive from a seed
(:func:`tests.faults._harness.ops`), so the harness recomputes what each ack means.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from tests.faults._harness import dump_points, ops

COMPACT_EVERY = 5


def prefill() -> dict[str, str]:
    """What the compaction worker writes before its operations (so compaction takes a while)."""
    return {f"fill-{i}": f"{i}:" + "f" * 1000 for i in range(1500)}


def open_archive(store: str, where: str, **options):
    """A new archive object of ``store`` over ``where``."""
    from klepto import archives

    factory = {
        "file": archives.file_archive,
        "dir": archives.dir_archive,
        "sql": archives.sqltable_archive,
    }[store]
    return factory(where, **options)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def direct(store: str, where: str, seed: int, count: int) -> None:
    archive = open_archive(store, where, cached=False)
    for i, (key, value) in enumerate(ops(seed, count)):
        archive[key] = value
        _say(f"A {i}")
    _say("END")


def dump(store: str, where: str, seed: int, count: int) -> None:
    front = open_archive(store, where, autodump=False)
    points = set(dump_points(seed, count))
    for i, (key, value) in enumerate(ops(seed, count)):
        front[key] = value
        if i in points:
            front.dump()
            _say(f"A {i}")
    _say("END")


def compact(store: str, where: str, seed: int, count: int) -> None:
    """Overwrites with a compaction after every ``COMPACT_EVERY`` of them (file archive)."""
    archive = open_archive(store, where, cached=False, compact_ratio=None)
    archive.update(prefill())
    _say("READY")
    for i, (key, value) in enumerate(ops(seed, count)):
        archive[key] = value
        _say(f"A {i}")
        if i % COMPACT_EVERY == COMPACT_EVERY - 1:
            _say("COMPACTING")
            archive.compact()
            _say("COMPACTED")
    _say("END")


def hold(store: str, where: str) -> None:
    """Take the archive's lock (a transaction) and wait to be killed."""
    archive = open_archive(store, where, cached=False)
    with archive.transaction():
        archive["held"] = 1
        _say("HOLDING")
        time.sleep(600)


def writer(store: str, where: str, wid: int, count: int, shared: int, dump_every: int) -> None:
    """Private keys ``(wid, i)`` and shared keys ``('shared', j)``; ``dump_every`` > 0 means
    a cached front that dumps every that many writes."""
    if dump_every:
        target = open_archive(store, where, autodump=False)
    else:
        target = open_archive(store, where, cached=False)
    writes = [((wid, i), f"{wid}:{i}") for i in range(count)]
    writes += [(("shared", j), f"{wid}:shared{j}") for j in range(shared)]
    random.Random(wid).shuffle(writes)
    for n, (key, value) in enumerate(writes, 1):
        target[key] = value
        if dump_every and n % dump_every == 0:
            target.dump()
    if dump_every:
        target.dump()
    _say(f"DONE {len(writes)}")


def reader(store: str, where: str, stop_file: str) -> None:
    """List and read in a loop; report every violation of the reader promises."""
    archive = open_archive(store, where, cached=False)
    report = {"rounds": 0, "drops": 0, "missing": 0, "phantoms": 0, "bad": 0, "errors": []}
    best = 0
    while not os.path.exists(stop_file) or report["rounds"] < 2:
        try:
            keys = list(archive)
            for key in keys:
                _check(key, archive[key], report)
            count = len(archive)
        except KeyError as exc:
            report["missing"] += 1
            report["errors"].append(f"listed key raised KeyError: {exc!r}")
            continue
        except Exception as exc:  # every other failure is a violation to report
            report["errors"].append(f"{type(exc).__name__}: {exc}")
            continue
        report["drops"] += len(keys) < best or count < len(keys)
        best = max(best, len(keys))
        report["rounds"] += 1
        time.sleep(0.001)
    report["final"] = best
    _say(json.dumps(report))


def _check(key: object, value: object, report: dict) -> None:
    if not (isinstance(key, tuple) and len(key) == 2):
        report["phantoms"] += 1
    elif key[0] == "shared":
        report["bad"] += not (isinstance(value, str) and value.endswith(f":shared{key[1]}"))
    else:
        report["bad"] += value != f"{key[0]}:{key[1]}"


COMMANDS = {
    "direct": direct,
    "dump": dump,
    "compact": compact,
    "hold": hold,
    "writer": writer,
    "reader": reader,
}


def main(argv: list[str]) -> None:
    store, command, where, *rest = argv
    args = [int(a) if a.lstrip("-").isdigit() else a for a in rest]
    COMMANDS[command](store, where, *args)


if __name__ == "__main__":
    main(sys.argv[1:])
