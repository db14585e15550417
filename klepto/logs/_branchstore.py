"""Where the branching log keeps its state inside an archive, with checked reads and writes.

Every key is a tuple headed by ``"klepto.tlog"`` and the namespace (the layout is documented
in ``docs/formats.rst``, "Branching log")::

    (PREFIX, ns, "meta")               {"format", "version", "index_every"}   written once
    (PREFIX, ns, "branch", b)          {"id", "parent", "fork", "created",     written once
                                        "rebased_from"}
    (PREFIX, ns, "node", b, seq)       {"branch", "seq", "ts", "txns"}         written once
    (PREFIX, ns, "tidx", b, seq)       int timestamp of node seq               written once
    (PREFIX, ns, "next")               int hint: branches allocated            overwritten
    (PREFIX, ns, "head", b)            int hint: a seq known to exist on b     overwritten

Records that decide what exists are written once, with the archive's atomic ``add``, and are
never changed, so two writers can never overwrite each other's branch or commit. The two
hints are plain writes that only ever name records that already exist: a stale hint costs a
few extra probes, never a wrong answer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from klepto.errors import CorruptArchiveError
from klepto.logs._branchtypes import Commit, decode_batch

__all__ = [
    "DEFAULT_INDEX_EVERY",
    "FORMAT",
    "PREFIX",
    "VERSION",
    "BranchRecord",
    "BranchStore",
    "gallop",
]

PREFIX = "klepto.tlog"
FORMAT = "klepto.tlog"
VERSION = 1
DEFAULT_INDEX_EVERY = 64


@dataclass(frozen=True, slots=True)
class BranchRecord:
    """The immutable facts about a branch, as stored under its ``branch`` key."""

    id: int
    parent: int | None
    fork: int
    created: int
    rebased_from: int | None = None

    def to_value(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "fork": self.fork,
            "created": self.created,
            "rebased_from": self.rebased_from,
        }

    @classmethod
    def from_value(cls, value: Any, key: Any, branch: int) -> BranchRecord:
        """Decode and check a stored record; damage raises naming ``key``."""
        if not isinstance(value, dict):
            raise CorruptArchiveError("branch record is not a dict", key=key)
        record = cls(
            id=_field_int(value, "id", key),
            parent=_field_int(value, "parent", key, optional=True),
            fork=_field_int(value, "fork", key),
            created=_field_int(value, "created", key),
            rebased_from=_field_int(value, "rebased_from", key, optional=True),
        )
        # Ids are allocated in order and a parent exists before its fork, so a parent id is
        # always smaller; checking it here also rules out cycles when walking ancestors.
        if record.id != branch:
            raise CorruptArchiveError(f"branch record names branch {record.id}", key=key)
        if record.parent is not None and record.parent >= record.id:
            raise CorruptArchiveError("branch record names a later branch as parent", key=key)
        if record.parent is None and record.fork != 0:
            raise CorruptArchiveError("root branch record has a fork point", key=key)
        return record


def _field_int(value: dict[Any, Any], name: str, key: Any, *, optional: bool = False) -> Any:
    if name not in value:
        raise CorruptArchiveError(f"record lacks field {name!r}", key=key)
    field = value[name]
    if field is None and optional:
        return None
    return checked_int(field, key, name)


def checked_int(value: Any, key: Any, what: str) -> int:
    """A stored non-negative int (bools are not ints here); anything else is damage."""
    if type(value) is not int or value < 0:
        raise CorruptArchiveError(f"{what} is not a non-negative int: {value!r:.40}", key=key)
    return value


def gallop(exists: Callable[[int], bool], known: int) -> int:
    """The last position of a gap-free run that reaches past ``known``.

    ``known`` is a position that exists (or the run's base); positions after it exist up to
    some end and none beyond. Doubling steps then bisecting finds that end in
    O(log distance) probes, so a stale hint costs little.
    """
    step = 1
    while exists(known + step):
        known += step
        step *= 2
    missing = known + step
    while missing - known > 1:
        middle = (known + missing) // 2
        if exists(middle):
            known = middle
        else:
            missing = middle
    return known


class BranchStore:
    """The archive keys of one namespace, and checked reads and writes of what they hold."""

    def __init__(self, archive: Any, namespace: str) -> None:
        self.archive = archive
        self.namespace = namespace

    def key(self, *parts: Any) -> tuple[Any, ...]:
        return (PREFIX, self.namespace, *parts)

    # --- namespace settings ---------------------------------------------------------------
    def open_meta(self, index_every: int | None) -> int:
        """Create the namespace's settings record or check the stored one; the index interval."""
        wanted = DEFAULT_INDEX_EVERY if index_every is None else operator.index(index_every)
        if wanted < 1:
            raise ValueError(f"index_every must be at least 1, got {wanted}")
        key = self.key("meta")
        meta = {"format": FORMAT, "version": VERSION, "index_every": wanted}
        if self.archive.add(key, meta):
            return wanted
        stored = self._require(key, "settings record")
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            raise CorruptArchiveError("not a branching log settings record", key=key)
        if stored.get("version") != VERSION:
            raise ValueError(
                f"branching log format version {stored.get('version')!r} is not supported "
                f"(this klepto reads version {VERSION})"
            )
        interval = checked_int(stored.get("index_every"), key, "index_every")
        if interval < 1:
            raise CorruptArchiveError("index_every is 0", key=key)
        if index_every is not None and wanted != interval:
            raise ValueError(f"index_every={wanted} contradicts the stored {interval}")
        return interval

    # --- branches -------------------------------------------------------------------------
    def add_branch(self, record: BranchRecord) -> bool:
        return self.archive.add(self.key("branch", record.id), record.to_value())  # type: ignore[no-any-return]

    def branch_exists(self, branch: int) -> bool:
        return self.key("branch", branch) in self.archive

    def read_branch(self, branch: int) -> BranchRecord | None:
        key = self.key("branch", branch)
        try:
            value = self.archive[key]
        except KeyError:
            return None
        return BranchRecord.from_value(value, key, branch)

    def next_hint(self) -> int:
        return self._hint(self.key("next"), 0)  # type: ignore[no-any-return]

    def set_next_hint(self, count: int) -> None:
        self.archive[self.key("next")] = count

    # --- heads ----------------------------------------------------------------------------
    def head_hint(self, branch: int) -> int | None:
        return self._hint(self.key("head", branch), None)  # type: ignore[no-any-return]

    def set_head_hint(self, branch: int, seq: int) -> None:
        self.archive[self.key("head", branch)] = seq

    # --- nodes ----------------------------------------------------------------------------
    def add_node(self, branch: int, seq: int, timestamp: int, txns: tuple[Any, ...]) -> bool:
        value = {"branch": branch, "seq": seq, "ts": timestamp, "txns": txns}
        return self.archive.add(self.key("node", branch, seq), value)  # type: ignore[no-any-return]

    def node_exists(self, branch: int, seq: int) -> bool:
        return self.key("node", branch, seq) in self.archive

    def read_node(self, branch: int, seq: int) -> Commit:
        """The commit stored at ``(branch, seq)``; it must exist (it is at or below a head)."""
        key = self.key("node", branch, seq)
        value = self._require(key, "commit node")
        if not isinstance(value, dict):
            raise CorruptArchiveError("commit node is not a dict", key=key)
        if value.get("branch") != branch or value.get("seq") != seq:
            raise CorruptArchiveError("commit node is stored under another position", key=key)
        timestamp = checked_int(value.get("ts"), key, "timestamp")
        return Commit(seq, branch, timestamp, decode_batch(value.get("txns"), key))

    # --- sparse time index ----------------------------------------------------------------
    def add_time_entry(self, branch: int, seq: int, timestamp: int) -> None:
        # add(): a retry after a crash finds the entry present and leaves it alone.
        self.archive.add(self.key("tidx", branch, seq), timestamp)

    def time_entry(self, branch: int, seq: int) -> int | None:
        return self._hint(self.key("tidx", branch, seq), None)  # type: ignore[no-any-return]

    # --- helpers --------------------------------------------------------------------------
    def _require(self, key: Any, what: str) -> Any:
        try:
            return self.archive[key]
        except KeyError:
            raise CorruptArchiveError(f"branching log {what} is missing", key=key) from None

    def _hint(self, key: Any, default: Any) -> Any:
        try:
            value = self.archive[key]
        except KeyError:
            return default
        return checked_int(value, key, "hint")
