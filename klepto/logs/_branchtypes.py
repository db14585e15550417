"""Value types of the branching log: transactions, replayed entries, commits and errors.

Transactions are stored as plain tuples (``("set", key, value)`` and ``("del", key)``), so a
node record holds only data that the archive's own serializer already handles. Decoding
checks the shape of every stored transaction and reports damage as
:class:`~klepto.errors.CorruptArchiveError` naming the archive key, never as a short replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from klepto.errors import CorruptArchiveError, KleptoError

__all__ = [
    "BranchInfo",
    "Commit",
    "ConflictError",
    "Delete",
    "Entry",
    "Set",
    "Transaction",
    "UnknownBranchError",
    "as_batch",
    "decode_batch",
    "encode_batch",
]

_SET = "set"
_DELETE = "del"


@dataclass(frozen=True, slots=True)
class Set:
    """Store ``value`` under ``key`` (the SET command)."""

    key: Any
    value: Any


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key``; removing an absent key is a no-op (the DELETE command)."""

    key: Any


Transaction: TypeAlias = Set | Delete


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit of a branch's history: its sequence number ``seq``, the ``branch`` that
    wrote it (an ancestor for positions at or before a fork point), its ``timestamp`` in
    nanoseconds and its transactions, in order."""

    seq: int
    branch: int
    timestamp: int
    txns: tuple[Transaction, ...]


@dataclass(frozen=True, slots=True)
class Entry:
    """One replayed transaction: the ``seq`` of its commit, its ``index`` in that commit,
    the ``branch`` that wrote it, the commit's ``timestamp`` (ns) and the transaction."""

    seq: int
    index: int
    branch: int
    timestamp: int
    txn: Transaction


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """What :meth:`BranchLog.branch_info` reports about one branch.

    ``parent`` is None for a root branch; ``fork`` is the parent's sequence number the
    branch was forked at (0 for a root); ``head`` is the sequence number of the branch's
    last commit (``head == fork`` for a branch without commits of its own); ``created`` is
    the creation time in nanoseconds; ``rebased_from`` names the branch a rebase copied.
    """

    id: int
    parent: int | None
    fork: int
    head: int
    created: int
    rebased_from: int | None


class ConflictError(KleptoError):
    """A push lost a race it asked not to retry, or a rebase met conflicting keys.

    ``keys`` lists the conflicting keys of a rebase (empty for a push).
    """

    def __init__(self, message: str, *, keys: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


class UnknownBranchError(KleptoError, KeyError):
    """No branch with this id exists in the log's namespace."""

    def __str__(self) -> str:
        # KeyError would show the repr of the message; show the message itself.
        return str(self.args[0]) if self.args else ""


def as_batch(txns: Transaction | Iterable[Transaction]) -> tuple[Transaction, ...]:
    """The transactions of one commit, checked: one transaction or a non-empty iterable."""
    if isinstance(txns, (Set, Delete)):
        return (txns,)
    batch = tuple(txns)
    if not batch:
        raise ValueError("a commit needs at least one transaction")
    for txn in batch:
        if not isinstance(txn, (Set, Delete)):
            raise TypeError(f"expected Set or Delete, got {type(txn).__name__}")
    return batch


def encode_batch(batch: tuple[Transaction, ...]) -> tuple[tuple[Any, ...], ...]:
    """Plain tuples for storage."""
    return tuple(
        (_SET, txn.key, txn.value) if isinstance(txn, Set) else (_DELETE, txn.key) for txn in batch
    )


def decode_batch(items: Any, where: Any) -> tuple[Transaction, ...]:
    """Transactions from their stored form; damage raises naming the archive key ``where``."""
    # Some serializers (json) turn tuples into lists, so both shapes are accepted.
    if not isinstance(items, (tuple, list)) or not items:
        raise CorruptArchiveError("branching log node holds no transactions", key=where)
    return tuple(_decode_one(item, where) for item in items)


def _decode_one(item: Any, where: Any) -> Transaction:
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], str):
        tag = item[0]
        if tag == _SET and len(item) == 3:
            return Set(item[1], item[2])
        if tag == _DELETE and len(item) == 2:
            return Delete(item[1])
    raise CorruptArchiveError(f"malformed transaction {item!r:.80} in branching log", key=where)
