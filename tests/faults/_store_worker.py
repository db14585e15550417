"""Worker processes for the per-store fault tests: ``python -m tests.faults._store_worker``.

Commands::

    write STORE WHERE SEED COUNT DURABLE   open (creating), write value(SEED, i) for i < COUNT,
                                           printing "A i" after each write returned; "END"
    hold STORE WHERE KIND                  take a lock of KIND, print "HOLDING", wait

Lock kinds: ``writer`` (the store's single-writer lock: record file, operation store,
checkpoint log) and ``key`` (``archive.lock(key)`` of file, directory and SQLite archives).
"""

from __future__ import annotations

import sys
import time

from tests.faults._stores import ADAPTERS, value


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def write(store: str, where: str, seed: str, count: str, durable: str) -> None:
    adapter = ADAPTERS[store]
    handle = adapter.open(where, durable=durable == "1")
    for i in range(int(count)):
        adapter.put(handle, i, value(int(seed), i))
        _say(f"A {i}")
    adapter.close(handle)
    _say("END")


def hold(store: str, where: str, kind: str) -> None:
    adapter = ADAPTERS[store]
    handle = adapter.open(where)
    if kind == "key":
        with handle.lock("the-key"):
            _say("HOLDING")
            time.sleep(600)
    adapter.put(handle, 0, "held")  # the first write takes the writer lock
    _say("HOLDING")
    time.sleep(600)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"write": write, "hold": hold}[command](*args)
