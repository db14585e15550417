"""Worker processes for the file_archive fault tests: ``python -m tests.faults._file_worker``.

Every worker prints one line per acknowledged operation and flushes it, so the harness knows
exactly what was acknowledged when it sends SIGKILL. Operation sequences derive from a seed,
so the harness recomputes what each acknowledgement means.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time


def ops(seed: int, count: int) -> list[tuple[str, str]]:
    """``count`` (key, value) writes: 25% overwrite an earlier key; values of 8 B to 4 KiB."""
    rng = random.Random(seed)
    keys: list[str] = []
    out = []
    for i in range(count):
        if keys and rng.random() < 0.25:
            key = rng.choice(keys)
        else:
            key = f"key-{i}"
            keys.append(key)
        size = rng.choice([8, 100, 1000, 4096])
        out.append((key, f"{i}:" + "v" * size))
    return out


def dump_points(seed: int, count: int) -> list[int]:
    """Indexes of the operations after which the cached writer calls ``dump()``."""
    rng = random.Random(seed + 1)
    points, index = [], -1
    while index < count - 1:
        index = min(index + rng.randint(1, 20), count - 1)
        points.append(index)
    return points


def prefill() -> dict[str, str]:
    """What the compaction worker writes before its operations (so compaction takes a while)."""
    return {f"fill-{i}": f"{i}:" + "f" * 1000 for i in range(1500)}


COMPACT_EVERY = 5


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _open(path: str, **options):
    from klepto.archives import file_archive

    return file_archive(path, **options)


def direct(path: str, seed: int, count: int) -> None:
    archive = _open(path, cached=False)
    for i, (key, value) in enumerate(ops(seed, count)):
        archive[key] = value
        _say(f"A {i}")
    _say("END")


def dump(path: str, seed: int, count: int) -> None:
    front = _open(path, autodump=False)
    points = set(dump_points(seed, count))
    for i, (key, value) in enumerate(ops(seed, count)):
        front[key] = value
        if i in points:
            front.dump()
            _say(f"A {i}")
    _say("END")


def compact(path: str, seed: int, count: int) -> None:
    """Overwrites with a compaction after every ``COMPACT_EVERY`` of them."""
    archive = _open(path, cached=False, compact_ratio=None)
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


def create(path: str) -> None:
    archive = _open(path, cached=False)
    for i in range(3):
        archive[f"k{i}"] = i
        _say(f"A {i}")
    _say("END")


def hold(path: str) -> None:
    """Take the archive's lock (a transaction) and wait to be killed."""
    archive = _open(path, cached=False)
    with archive.transaction():
        archive["held"] = 1
        _say("HOLDING")
        time.sleep(600)


def writer(path: str, wid: int, count: int, shared: int, dump_every: int) -> None:
    """Private keys ``(wid, i)`` and shared keys ``('shared', j)``; ``dump_every`` > 0 means
    a cached front that dumps every that many writes."""
    target = _open(path, cached=dump_every > 0)
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


def reader(path: str, stop_file: str) -> None:
    """List and read in a loop; report every violation of the reader promises."""
    archive = _open(path, cached=False)
    report = {"rounds": 0, "drops": 0, "missing": 0, "phantoms": 0, "bad": 0, "errors": []}
    best = 0
    # At least one whole round even if the writers finished first (a loaded machine may
    # start this process late); then until told to stop. Bounded if errors repeat.
    while (report["rounds"] == 0 or not os.path.exists(stop_file)) and len(report["errors"]) < 50:
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
    "create": create,
    "hold": hold,
    "writer": writer,
    "reader": reader,
}


def main(argv: list[str]) -> None:
    command, path, *rest = argv
    args = [int(a) if a.lstrip("-").isdigit() else a for a in rest]
    COMMANDS[command](path, *args)


if __name__ == "__main__":
    main(sys.argv[1:])
