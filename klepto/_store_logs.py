"""Store adapters for record files, operation stores and branching logs (see klepto.stores).

Readers open record files in mode ``"r"``, which never takes the writer lock, so a live
writer in another process neither blocks them nor is disturbed by them. A branching log is
read through :class:`ReadOnlyArchive`, so opening it cannot write its settings record.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

from klepto._store_adapters import Store, disk_bytes, iso_time, report
from klepto.archives._base import Archive
from klepto.archives._maintenance import Progress, verify_archive
from klepto.errors import CorruptionError, KleptoError

__all__ = ["BranchLogStore", "OplogStore", "ReadOnlyArchive", "RecordStore"]


class ReadOnlyError(KleptoError, TypeError):
    """A write was attempted through a store opened read-only."""


class ReadOnlyArchive(Archive):
    """Reads of ``inner``; any write raises :class:`ReadOnlyError` (``add`` of a present
    key is a refused no-op, as it would be on the archive itself)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(**inner.__state__)
        self.inner = inner
        self.kind = inner.kind  # type: ignore[misc]

    def _get(self, key: Any) -> Any:
        return self.inner[key]

    def _keys(self) -> Iterator[Any]:
        return iter(self.inner)

    def _len(self) -> int:
        return len(self.inner)

    def _contains(self, key: Any) -> bool:
        return key in self.inner

    def _set(self, key: Any, value: Any) -> None:
        raise ReadOnlyError(f"{self.inner} is open read-only")

    def _delete(self, key: Any) -> None:
        raise ReadOnlyError(f"{self.inner} is open read-only")

    def _add(self, key: Any, value: Any) -> bool:
        if key in self.inner:
            return False
        raise ReadOnlyError(f"{self.inner} is open read-only")

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()  # type: ignore[no-any-return]

    def verify(self, progress: Progress | None = None) -> Any:
        """The inner archive's verification (it knows its own storage)."""
        return verify_archive(self.inner, progress=progress)

    @property  # type: ignore[misc]
    def name(self) -> Any:
        return self.inner.name

    def close(self) -> None:
        self.inner.close()
        super().close()


def _record_text(record: bytes) -> Any:
    try:
        return record.decode("utf-8")
    except UnicodeDecodeError:
        return record


def _metadata(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _record_text(raw)


class RecordStore(Store):
    """A record file (:mod:`klepto.records`): keys are record numbers."""

    kind = "records"

    def __init__(self, location: str, path: str) -> None:
        from klepto.records import RecordFile

        super().__init__(location)
        self.path = path
        self.file = RecordFile(path, "r")

    def info(self) -> dict[str, Any]:
        from klepto import _recordformat as fmt

        header = self.file._header
        return {
            "kind": self.kind,
            "location": self.location,
            "settings": {
                "compression": fmt.CODEC_NAMES[header.codec],
                "frame_size": header.frame_size,
                "dictionary_size": header.dictionary_size,
                "metadata": _metadata(self.file.get_metadata()),
            },
            "entries": len(self.file),
            "commits": self.file.commit_seq,
            "bytes": disk_bytes(self.path),
            "format": fmt.VERSION,
            "last_commit": iso_time(self.file.commit_time_ns / 1e9),
        }

    def keys(self, limit: int | None = None) -> Iterator[Any]:
        return iter(range(len(self.file) if limit is None else min(limit, len(self.file))))

    def get(self, key: Any) -> Any:
        if not isinstance(key, int) or not -len(self.file) <= key < len(self.file):
            raise KeyError(key)
        return self.file[key]

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        found = self.file.verify(progress=progress)
        problems = [(f"{self.path} at offset {offset}", why) for offset, why in found.problems]
        return report(self.location, self.kind, found.records, problems)

    def compact(self, progress: Progress | None = None) -> dict[str, Any]:
        from klepto.records import RecordFile

        before = disk_bytes(self.path)
        with RecordFile(self.path, "a") as writer, writer.rewrite() as fresh:
            fresh.set_metadata(writer.get_metadata())
            total = len(writer)
            for done, record in enumerate(writer, 1):
                fresh.append(record)
                if progress is not None:
                    progress(done, total)
        return {"rewritten": True, "bytes_before": before, "bytes_after": disk_bytes(self.path)}

    def items(self, progress: Progress | None = None) -> Iterator[tuple[Any, Any]]:
        total = len(self.file)
        for number, record in enumerate(self.file):
            yield number, _record_text(record)
            if progress is not None:
                progress(number + 1, total)

    def tail(self, count: int = 10) -> list[Any]:
        start = max(len(self.file) - count, 0)
        return [
            {"record": i, "data": _record_text(r)}
            for i, r in enumerate(self.file.records(start), start)
        ]

    def follow(
        self, timeout: float | None = None, poll_interval: float = 0.2, start: int | None = None
    ) -> Iterator[Any]:
        start = len(self.file) if start is None else start
        records = self.file.follow(start, poll_interval=poll_interval, timeout=timeout)
        for number, record in enumerate(records, start):
            yield {"record": number, "data": _record_text(record)}

    def close(self) -> None:
        self.file.close()


class OplogStore(RecordStore):
    """An operation store (:mod:`klepto.logs.oplog`): keys are its top-level keys."""

    kind = "oplog"

    def _state(self) -> dict[Any, Any]:
        from klepto.logs.oplog import safe_load

        return safe_load(self.path, unknown="keep")

    def info(self) -> dict[str, Any]:
        details = super().info()
        details.update(kind=self.kind, records=details["entries"], entries=len(self._state()))
        return details

    def keys(self, limit: int | None = None) -> Iterator[Any]:
        return itertools.islice(iter(self._state()), limit)

    def get(self, key: Any) -> Any:
        return self._state()[key]

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        found = super().verify(progress)
        if found["ok"]:
            try:
                self._state()
            except CorruptionError as exc:
                found["problems"].append({"where": self.path, "reason": exc.reason})
                found["ok"] = False
        return found

    def compact(self, progress: Progress | None = None) -> dict[str, Any]:
        from klepto.logs.oplog import compact

        before = disk_bytes(self.path)
        compact(self.path)
        if progress is not None:
            progress(1, 1)
        return {"rewritten": True, "bytes_before": before, "bytes_after": disk_bytes(self.path)}

    def items(self, progress: Progress | None = None) -> Iterator[tuple[Any, Any]]:
        state = self._state()
        for done, (key, value) in enumerate(state.items(), 1):
            yield key, value
            if progress is not None:
                progress(done, len(state))

    def _operations(self, records: Any, first: int) -> list[Any]:
        from klepto.logs._opreplay import json_lines

        found = []
        for number, record in enumerate(records, first):
            for line in json_lines([record], self.path):
                found.append({"record": number, "op": json.loads(line)})
        return found

    def tail(self, count: int = 10) -> list[Any]:
        start = max(len(self.file) - count, 0)
        return self._operations(self.file.records(start), start)

    def follow(
        self, timeout: float | None = None, poll_interval: float = 0.2, start: int | None = None
    ) -> Iterator[Any]:
        start = len(self.file) if start is None else start
        records = self.file.follow(start, poll_interval=poll_interval, timeout=timeout)
        for number, record in enumerate(records, start):
            yield from self._operations([record], number)


def _commit(commit: Any) -> dict[str, Any]:
    from klepto.logs import Set

    txns = [["set", t.key, t.value] if isinstance(t, Set) else ["del", t.key] for t in commit.txns]
    return {
        "branch": commit.branch,
        "seq": commit.seq,
        "time": iso_time(commit.timestamp / 1e9),
        "txns": txns,
    }


class BranchLogStore(Store):
    """A branching log in an archive: ``ls``/``get`` read the view of :attr:`branch`."""

    kind = "tlog"

    def __init__(self, location: str, archive: Any, namespace: str, path: str | None) -> None:
        from klepto.logs import BranchLog

        super().__init__(location)
        self.archive = archive
        self.path = path
        self.log = BranchLog(archive, namespace)
        self.branch = 0

    def info(self) -> dict[str, Any]:
        branches, total, newest = [], 0, 0
        for b in self.log.branches():
            info = self.log.branch_info(b)
            branches.append(
                {"branch": b, "parent": info.parent, "fork": info.fork, "head": info.head}
            )
            total += info.head - info.fork
            for commit in self.log.commits(b, start=max(info.head, 1)):
                newest = max(newest, commit.timestamp)
        return {
            "kind": self.kind,
            "location": self.location,
            "settings": {"namespace": self.log.namespace, "index_every": self.log.index_every},
            "archive": self.archive.kind,
            "entries": total,
            "branches": branches,
            "bytes": disk_bytes(self.path),
            "format": 1,
            "last_commit": iso_time(newest / 1e9),
        }

    def keys(self, limit: int | None = None) -> Iterator[Any]:
        return itertools.islice(iter(self.log.view(self.branch)), limit)

    def get(self, key: Any) -> Any:
        return self.log.view(self.branch)[key]

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        found = verify_archive(self.archive, progress=progress)
        problems, checked = list(found.problems), found.checked
        for b in self.log.branches():
            try:
                checked += sum(1 for _ in self.log.commits(b))
            except CorruptionError as exc:
                problems.append((f"branch {b}", str(exc)))
        return report(self.location, self.kind, checked, problems)

    def items(self, progress: Progress | None = None) -> Iterator[tuple[Any, Any]]:
        return iter(self.log.view(self.branch).items())

    def tail(self, count: int = 10) -> list[Any]:
        head = self.log.head(self.branch)
        return [_commit(c) for c in self.log.commits(self.branch, start=max(head - count + 1, 1))]

    def follow(
        self, timeout: float | None = None, poll_interval: float = 0.2, start: int | None = None
    ) -> Iterator[Any]:
        seen = self.log.head(self.branch) if start is None else max(start - 1, 0)
        idle = time.monotonic()
        while timeout is None or time.monotonic() - idle < timeout:
            head = self.log.head(self.branch)
            if head > seen:
                yield from (
                    _commit(c) for c in self.log.commits(self.branch, start=seen + 1, end=head)
                )
                seen, idle = head, time.monotonic()
                continue
            time.sleep(poll_interval)

    def close(self) -> None:
        self.log.close()
        self.archive.close()
