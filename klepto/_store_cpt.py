"""Store adapter for checkpoints + incremental log (:mod:`klepto.logs.checkpoint`).

The checkpoints are records of an archive; the log is record-file segments in
``<archive path>.log`` (the default layout of a ``Transactional`` made from a path) or keys
of the same archive. Everything here only reads: no lock is taken and no state is
unpickled (checkpoint states and log values are shown by their sizes; recovering them is
:meth:`klepto.logs.checkpoint.Transactional.recover`'s job, with the right serializer).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

from klepto._store_adapters import Store, disk_bytes, iso_time, report
from klepto.archives._maintenance import Progress, verify_archive
from klepto.errors import CorruptionError

__all__ = ["CheckpointLogStore", "holds_checkpoints"]


def holds_checkpoints(archive: Any, namespace: str) -> bool:
    """Whether ``archive`` holds the checkpoints of ``namespace``."""
    from klepto.logs._cptstore import PREFIX

    return (PREFIX, namespace, "head") in archive or (PREFIX, namespace, "gen", 1) in archive


class CheckpointLogStore(Store):
    """A checkpointed computation: ``ls`` lists its checkpoint generations."""

    kind = "checkpoint"

    def __init__(self, location: str, archive: Any, namespace: str, path: str | None) -> None:
        from klepto.logs._cptlog import ArchiveLog, SegmentLog
        from klepto.logs._cptstore import CheckpointStore

        super().__init__(location)
        self.archive, self.path = archive, path
        self.checkpoints = CheckpointStore(archive, namespace)
        segments = None if path is None else path.rstrip(os.sep) + ".log"
        if segments is not None and os.path.isdir(segments):
            self.log: Any = SegmentLog(segments, namespace, durable=False)
        else:
            self.log = ArchiveLog(archive, namespace)
        self.namespace = namespace

    def _generations(self) -> list[int]:
        return sorted(self.checkpoints.generations(self.checkpoints.latest()))

    def _record(self, gen: int) -> dict[str, Any]:
        found = self.checkpoints.read(gen)
        return {
            "gen": gen,
            "seq": found.seq,
            "time": iso_time(found.time_ns / 1e9),
            "bytes": len(found.state),
        }

    def _covered(self) -> int:
        """The last log sequence number the newest checkpoint covers (0: none)."""
        generations = self._generations()
        return self.checkpoints.read(generations[-1]).seq if generations else 0

    def info(self) -> dict[str, Any]:
        records = [self._record(gen) for gen in self._generations()]
        pending = sum(1 for _ in self.log.entries(self._covered()))
        log_location = self.log.location if isinstance(self.log.location, str) else "archive"
        return {
            "kind": self.kind,
            "location": self.location,
            "settings": {"name": self.namespace, "log": log_location},
            "archive": self.archive.kind,
            "entries": pending,
            "checkpoints": records,
            "bytes": disk_bytes(self.path),
            "format": 1,
            "last_commit": records[-1]["time"] if records else None,
        }

    def keys(self, limit: int | None = None) -> Iterator[Any]:
        return itertools.islice(iter(self._generations()), limit)

    def get(self, key: Any) -> Any:
        if not isinstance(key, int) or key not in self._generations():
            raise KeyError(key)
        return self._record(key)

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        found = verify_archive(self.archive, progress=progress)
        problems, checked = list(found.problems), found.checked
        generations = self._generations()
        for gen in generations:
            try:
                self.checkpoints.read(gen)
            except CorruptionError as exc:
                problems.append((f"checkpoint {gen}", str(exc)))
        oldest = self.checkpoints.read(generations[0]).seq if generations else 0
        try:
            checked += sum(1 for _ in self.log.entries(oldest))
        except CorruptionError as exc:
            problems.append((f"log of {self.namespace!r}", str(exc)))
        return report(self.location, self.kind, checked, problems)

    def _entries(self, after: int) -> Iterator[dict[str, Any]]:
        return ({"seq": seq, "bytes": len(blob)} for seq, blob in self.log.entries(after))

    def tail(self, count: int = 10) -> list[Any]:
        entries = list(self._entries(self._covered()))
        return entries[-count:] if count else []

    def follow(
        self, timeout: float | None = None, poll_interval: float = 0.2, start: int | None = None
    ) -> Iterator[Any]:
        seen = self.log.last_seq(self._covered()) if start is None else max(start - 1, 0)
        idle = time.monotonic()
        while timeout is None or time.monotonic() - idle < timeout:
            fresh = list(self._entries(seen))
            if fresh:
                yield from fresh
                seen, idle = fresh[-1]["seq"], time.monotonic()
                continue
            time.sleep(poll_interval)

    def close(self) -> None:
        self.archive.close()
