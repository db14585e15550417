"""One adapter per store, so that a fault test is written once and runs on every store.

An adapter opens a store for writing at a location (a path; SQLite is a file too), makes
one committed write of ``(i, value)``, and reads back the whole state with a fresh object
as ``{i: value}`` (later writes of the same ``i`` win). Stores: the record file, the file,
directory and SQLite archives, the checkpoint log, the operation store and the branching
log (over a directory archive).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

NAMES = ("record", "file", "dir", "sqlite", "checkpoint", "oplog", "branches")
CHECKPOINT_EVERY = 7


def value(seed: int, i: int) -> str:
    """Value ``i`` of run ``seed``; sizes vary from a few bytes to 3 KiB."""
    return f"{seed}:{i}:" + "v" * ((i * 131 + seed * 7) % 3000)


class Adapter:
    name = ""

    def open(self, where: str, durable: bool = False) -> Any:
        raise NotImplementedError

    def put(self, handle: Any, i: int, value: str) -> None:
        raise NotImplementedError

    def state(self, where: str) -> dict[int, str]:
        raise NotImplementedError

    def close(self, handle: Any) -> None:
        handle.close()

    def paths(self, where: str) -> list[str]:
        """Everything the store keeps on disk for ``where``."""
        return [where]


class RecordAdapter(Adapter):
    name = "record"

    def open(self, where, durable=False):
        from klepto.records import RecordFile

        return RecordFile(where, "a", durability="durable" if durable else "flush")

    def put(self, handle, i, value):
        handle.append(f"{i}\0{value}".encode())
        handle.commit()

    def state(self, where):
        from klepto.records import RecordFile

        with RecordFile(where) as reader:
            pairs = [record.decode().split("\0", 1) for record in reader]
        return {int(i): v for i, v in pairs}

    def paths(self, where):
        return [where, where + ".lock"]


class ArchiveAdapter(Adapter):
    def archive(self, where: str, durable: bool = False, **options: Any) -> Any:
        raise NotImplementedError

    def open(self, where, durable=False):
        return self.archive(where, durable)

    def put(self, handle, i, value):
        handle[i] = value

    def state(self, where):
        archive = self.archive(where)
        try:
            return archive.__asdict__()
        finally:
            archive.close()


class FileAdapter(ArchiveAdapter):
    name = "file"

    def archive(self, where, durable=False, **options):
        from klepto.archives import file_archive

        return file_archive(where, cached=False, durable=durable, **options)

    def paths(self, where):
        return [where, where + ".idx", where + ".lock", where + ".klepto-locks"]


class DirAdapter(ArchiveAdapter):
    name = "dir"

    def archive(self, where, durable=False, **options):
        from klepto.archives import dir_archive

        return dir_archive(where, cached=False, durable=durable, **options)

    def paths(self, where):
        return [where, where + ".klepto-locks"]


class SqliteAdapter(ArchiveAdapter):
    name = "sqlite"

    def archive(self, where, durable=False, **options):
        from klepto.archives import sqltable_archive

        url = f"sqlite:///{where}?table=memo"
        synchronous = "FULL" if durable else "NORMAL"
        return sqltable_archive(url, cached=False, synchronous=synchronous, **options)

    def paths(self, where):
        return [where + suffix for suffix in ("", "-wal", "-shm", ".klepto-locks")]


class CheckpointAdapter(Adapter):
    """A computation whose state is a dict: each write is logged, every 7th checkpointed."""

    name = "checkpoint"

    def open(self, where, durable=False):
        from klepto.logs import Transactional

        t = Transactional(where, durability="durable" if durable else "flush")
        t.state = t.recover(create=dict, apply=_fold)
        return t

    def put(self, handle, i, value):
        handle.log((i, value))
        handle.state = _fold(handle.state, (i, value))
        if len(handle.state) % CHECKPOINT_EVERY == 0:
            handle.checkpoint(handle.state)

    def state(self, where):
        from klepto.logs import NoCheckpointError, Transactional

        with Transactional(where) as t:
            try:
                return t.recover(apply=_fold)
            except NoCheckpointError:
                # Killed before its first checkpoint: a valid empty store, which recovers
                # with create= (and whose log, if any, is replayed on that state).
                return t.recover(create=dict, apply=_fold)

    def paths(self, where):
        return [where, where + ".log"] + [where + s for s in (".idx", ".lock", ".klepto-locks")]


def _fold(state: dict, item: tuple) -> dict:
    return {**state, item[0]: item[1]}


class OplogAdapter(Adapter):
    name = "oplog"

    def open(self, where, durable=False):
        from klepto.logs.oplog import StoreRoot

        return StoreRoot(where, "a", durability="durable" if durable else "flush")

    def put(self, handle, i, value):
        handle[str(i)] = value

    def state(self, where):
        from klepto.logs.oplog import safe_load

        return {int(k): v for k, v in safe_load(where).items()}

    def paths(self, where):
        return [where, where + ".lock"]


class BranchesAdapter(Adapter):
    """Commits on branch 0 of a branching log kept in a directory archive."""

    name = "branches"

    def open(self, where, durable=False):
        from klepto.archives import dir_archive
        from klepto.logs import BranchLog

        archive = dir_archive(where, cached=False, durable=durable)
        log = BranchLog(archive)
        if not log.branches():
            log.create_branch()
        log.archive_object = archive
        return log

    def put(self, handle, i, value):
        from klepto.logs import Set

        handle.push(0, Set(i, value))

    def state(self, where):
        from klepto.archives import dir_archive
        from klepto.logs import BranchLog

        archive = dir_archive(where, cached=False)
        try:
            log = BranchLog(archive)
            return dict(log.view(0)) if log.branches() else {}
        finally:
            archive.close()

    def close(self, handle):
        handle.archive_object.close()

    def paths(self, where):
        return [where, where + ".klepto-locks"]


ADAPTERS: dict[str, Adapter] = {
    cls.name: cls()
    for cls in (
        RecordAdapter,
        FileAdapter,
        DirAdapter,
        SqliteAdapter,
        CheckpointAdapter,
        OplogAdapter,
        BranchesAdapter,
    )
}


def location(name: str, folder: Path | str) -> str:
    """Where store ``name`` lives inside ``folder``."""
    suffix = {"record": ".krf", "file": ".pkl", "sqlite": ".db", "oplog": ".oplog"}
    return os.path.join(folder, "store" + suffix.get(name, ""))
