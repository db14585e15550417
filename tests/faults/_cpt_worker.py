"""Worker processes for the checkpoint fault tests: ``python -m tests.faults._cpt_worker``.

``run ROOT SEED COUNT EVERY ARCHIVE`` recovers the computation at ROOT (creating it), then
logs values ``value(SEED, i)`` for ``i`` from where the recovered state ends up to
``COUNT - 1``, checkpointing the state (the list of all values so far) every EVERY values.
It prints ``R n`` after recovering a state of ``n`` values, ``A i`` once ``log`` of value
``i`` returned, ``C i`` once the checkpoint after value ``i`` returned, and ``END``.

``recover ROOT ARCHIVE`` recovers and prints ``R n``, forever (the harness kills it).

Kill points (environment): ``CPT_KILL_AT=phase:n`` kills the process with SIGKILL just
before the ``n``-th file-system write (write, pwrite, replace, link, unlink, ftruncate,
fsync, fdatasync) made inside ``phase``: ``log`` (appending an entry), ``checkpoint``
(storing a checkpoint: inside the archive's atomic write), ``prune`` (deleting old
checkpoints), ``drop`` (deleting log segments). ``CPT_KILL_RECOVER=k`` kills it while
recovering, after the ``k``-th log entry was applied.
"""

from __future__ import annotations

import functools
import os
import signal
import sys

SYSCALLS = ("write", "pwrite", "replace", "link", "unlink", "ftruncate", "fsync", "fdatasync")
PHASES = {
    "log": ("klepto.logs._cptlog", "SegmentLog", "append"),
    "checkpoint": ("klepto.logs._cptstore", "CheckpointStore", "write"),
    "prune": ("klepto.logs._cptstore", "CheckpointStore", "delete_below"),
    "drop": ("klepto.logs._cptlog", "SegmentLog", "drop_through"),
}


def value(seed: int, i: int) -> str:
    """Value ``i`` of run ``seed``; sizes vary so checkpoints and frames differ."""
    return f"{seed}:{i}:" + "v" * ((i * 37 + seed) % 300)


def reference(seed: int, count: int) -> list[str]:
    return [value(seed, i) for i in range(count)]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm_kill(spec: str) -> None:
    """Kill at the n-th file-system write inside a phase (see the module docstring)."""
    import importlib

    phase, _, number = spec.partition(":")
    target = int(number)
    state = {"inside": 0, "count": 0}
    module, cls_name, method = PHASES[phase]
    cls = getattr(importlib.import_module(module), cls_name)
    real_method = getattr(cls, method)

    @functools.wraps(real_method)
    def tracked(*args, **kwargs):
        state["inside"] += 1
        try:
            return real_method(*args, **kwargs)
        finally:
            state["inside"] -= 1

    setattr(cls, method, tracked)

    def counting(real):
        def counted(*args, **kwargs):
            if state["inside"]:
                state["count"] += 1
                if state["count"] == target:
                    _die()
            return real(*args, **kwargs)

        return counted

    for name in SYSCALLS:
        if hasattr(os, name):
            setattr(os, name, counting(getattr(os, name)))
    from klepto import _fs

    # the record file writes through a reference to os.pwrite taken at import
    _fs._pwrite_once = counting(_fs._pwrite_once)


def _open(root: str, archive: str):
    from klepto.logs import Transactional

    if archive == "dir":
        from klepto.archives import dir_archive

        cpt = dir_archive(os.path.join(root, "cpt"), cached=False, serializer="safe")
        return Transactional(cpt, os.path.join(root, "log"))
    return Transactional(os.path.join(root, "run"))


def _fold(kill_after: int | None):
    applied = {"n": 0}

    def fold(state, item):
        applied["n"] += 1
        if kill_after is not None and applied["n"] == kill_after:
            _die()
        return [*state, item]

    return fold


def run(root: str, seed: int, count: int, every: int, archive: str) -> None:
    kill_recover = os.environ.get("CPT_KILL_RECOVER")
    t = _open(root, archive)
    state = t.recover(create=list, apply=_fold(int(kill_recover) if kill_recover else None))
    _say(f"R {len(state)}")
    if os.environ.get("CPT_KILL_AT"):
        arm_kill(os.environ["CPT_KILL_AT"])
    for i in range(len(state), count):
        item = value(seed, i)
        t.log(item)
        _say(f"A {i}")
        state.append(item)
        if (i + 1) % every == 0:
            t.checkpoint(state)
            _say(f"C {i}")
    t.close()
    _say("END")


def recover_forever(root: str, archive: str) -> None:
    while True:
        t = _open(root, archive)
        state = t.recover(create=list, apply=_fold(None))
        t.close()
        _say(f"R {len(state)}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "run":
        run(args[0], int(args[1]), int(args[2]), int(args[3]), args[4])
    elif command == "recover":
        recover_forever(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")
