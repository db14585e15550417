"""Worker processes for the record-file fault tests: ``python -m tests.faults._record_worker``.

Records and commit boundaries derive from a seed (:class:`Plan`), so the harness knows what
every acknowledgement means. A writer prints ``ack <count>`` (flushed) after each commit
returned; readers print one JSON line with what they saw.

Commands::

    writer PATH SEED COUNT DURABILITY   append COUNT records, commit at the plan's boundaries
    sealer PATH SEED COUNT DURABILITY   commit each of COUNT records on its own (commit_record:
                                        sealed records, full commits for the big ones)
    hold PATH                           open PATH for writing, print "ready", wait for stdin
    reader PATH SEED COUNT STOPFILE     refresh until STOPFILE exists; report violations
"""

from __future__ import annotations

import json
import os
import random
import sys

SIZES = ((90, 20, 300), (9, 1024, 8192), (1, 70_000, 70_000))  # weight, min, max


class Plan:
    """``count`` deterministic records: 90% 20-300 B, 9% 1-8 KiB, 1% 70 KB; commits every
    1-50 records (so frames and compression blocks are crossed at every possible place)."""

    def __init__(self, seed: int, count: int) -> None:
        rnd = random.Random(seed)
        self.pool = bytes(rnd.choices(b"abcdefghij klmnop 0123456789\n", k=1 << 18))
        self.sizes = []
        self.starts = []
        kinds = rnd.choices(range(len(SIZES)), weights=[w for w, _, _ in SIZES], k=count)
        for kind in kinds:
            _, low, high = SIZES[kind]
            size = rnd.randint(low, high)
            self.sizes.append(size)
            self.starts.append(rnd.randrange(len(self.pool) - size))
        self.boundaries = []
        end = 0
        while end < count:
            end = min(end + rnd.randint(1, 50), count)
            self.boundaries.append(end)
        self.boundary_set = {0, *self.boundaries}

    def record(self, i: int) -> bytes:
        prefix = b"%d:" % i
        start = self.starts[i]
        return prefix + self.pool[start : start + max(self.sizes[i] - len(prefix), 0)]

    def next_boundary(self, count: int) -> int:
        for boundary in self.boundaries:
            if boundary > count:
                return boundary
        return count


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def writer(path: str, seed: int, count: int, durability: str) -> None:
    from klepto.records import RecordFile

    plan = Plan(seed, count)
    with RecordFile(path, "a", durability=durability) as f:
        done = len(f)
        for boundary in plan.boundaries:
            if boundary <= done:
                continue
            for i in range(len(f), boundary):
                f.append(plan.record(i))
            f.commit()
            _say(f"ack {boundary}")
    _say("done")


def sealer(path: str, seed: int, count: int, durability: str) -> None:
    from klepto.records import RecordFile

    plan = Plan(seed, count)
    with RecordFile(path, "a", durability=durability) as f:
        for i in range(len(f), count):
            f.commit_record(plan.record(i))
            _say(f"ack {i + 1}")
    _say("done")


def hold(path: str) -> None:
    from klepto.records import RecordFile

    with RecordFile(path, "a"):
        _say("ready")
        sys.stdin.readline()


def reader(path: str, seed: int, count: int, stop_file: str) -> None:
    from klepto.records import RecordFile

    plan = Plan(seed, count)
    violations: list[str] = []
    seen = 0
    refreshes = 0
    distinct = 0
    with RecordFile(path) as f:
        while True:
            stopping = os.path.exists(stop_file)
            f.refresh()
            refreshes += 1
            now = len(f)
            if now not in plan.boundary_set:
                violations.append(f"count {now} is not a commit boundary")
            if now < seen:
                violations.append(f"count went down from {seen} to {now}")
            if now > seen:
                distinct += 1
                for i, record in enumerate(f.records(seen, now), seen):
                    if record != plan.record(i):
                        violations.append(f"record {i} differs")
                seen = now
            if stopping:
                break
    _say(
        json.dumps(
            {
                "violations": violations[:20],
                "count": seen,
                "refreshes": refreshes,
                "distinct": distinct,
            }
        )
    )


def main(argv: list[str]) -> None:
    command, path, *rest = argv
    if command == "writer":
        writer(path, int(rest[0]), int(rest[1]), rest[2])
    elif command == "sealer":
        sealer(path, int(rest[0]), int(rest[1]), rest[2])
    elif command == "hold":
        hold(path)
    elif command == "reader":
        reader(path, int(rest[0]), int(rest[1]), rest[2])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
