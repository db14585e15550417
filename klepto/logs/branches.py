"""The branching transaction log: SET/DELETE commits in forkable branches, over any archive.

A :class:`BranchLog` keeps, in one namespace of a klepto archive, a tree of branches. Each
branch is a history of *commits*; a commit holds one or more transactions
(:class:`Set` and :class:`Delete`) and gets a *sequence number*. Sequence numbers are
positions in a branch's whole history: a root branch numbers its commits 1, 2, 3...; a
branch forked from ``parent`` at ``at`` shares the parent's commits ``1..at`` and numbers its
own from ``at + 1``. So "seq 3 of branch b" means the same commit for every branch that
shares it, and ``view(b, at=3)`` and ``replay(b, end=3)`` need no other argument.

Guarantees (each has a regression test named after the classic design's bug):

* A fork's replay stops at its fork point, which is stored with the branch and never
  changes: the parent's later commits never show, before or after a reopen.
* Branch ids are never reused: an id is taken by the archive's atomic ``add`` of the
  branch's record, so two processes never get the same id.
* Branches without commits anywhere in the chain are handled.
* Replay never ends early in silence: a backend error, a missing or damaged commit
  propagates (:class:`~klepto.errors.CorruptArchiveError` names the archive key).
* Concurrent pushes to one branch, from threads or processes, are serialised: each commit
  is stored with ``add`` at its sequence number, so exactly one writer wins a number and the
  loser moves on to the next (or, with ``push(..., if_head=n)``, raises
  :class:`ConflictError`). This relies on the archive's ``add`` being atomic across
  processes, as the persistent backends make it.
* Crash safety: a commit is one record written atomically, so a process killed during a
  push leaves either the whole commit or nothing; an acknowledged push is stored. Heads are
  found from a persisted hint plus a few probes, so a commit stored just before a crash is
  adopted on reopen, and writes continue after it.
* Reopening costs O(1) reads: the head hint (rewritten by every push) plus one probe
  past it (O(log k) probes for k commits stored after it by pushes cut short); nothing
  scans the namespace. A push costs one atomic ``add`` and one hint write (plus a small
  time-index ``add`` every ``index_every`` commits).

Timestamps are integers in nanoseconds from ``clock`` (default :func:`time.time_ns`). They
never decrease along a history: a push stores ``max(clock(), previous commit's timestamp)``,
so a time window is a contiguous run of sequence numbers, found by binary search over the
sparse per-branch time index (one entry every ``index_every`` commits).

Rebasing never rewrites history: :meth:`BranchLog.rebase` returns a *new* branch forked
from the head of ``onto`` and carrying the rebased branch's changes; the original branch
stays as it was. See :mod:`klepto.logs._rebase` for the conflict policies.

>>> from klepto.archives import dict_archive
>>> log = BranchLog(dict_archive(cached=False))
>>> main = log.create_branch()
>>> log.push(main, Set("lr", 0.1)), log.push(main, [Set("epochs", 10), Delete("lr")])
(1, 2)
>>> dict(log.view(main)), dict(log.view(main, at=1))
({'epochs': 10}, {'lr': 0.1})
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from klepto.archives._base import Archive
from klepto.errors import ArchiveClosedError, CorruptArchiveError
from klepto.logs._branchargs import backend, branch_argument, position, seq_argument
from klepto.logs._branchstore import BranchRecord, BranchStore, gallop
from klepto.logs._branchtypes import (
    BranchInfo,
    Commit,
    ConflictError,
    Delete,
    Entry,
    Set,
    Transaction,
    UnknownBranchError,
    as_batch,
    encode_batch,
)
from klepto.logs._kvview import KVView, fold
from klepto.logs._rebase import POLICIES, after, merge_base, plan
from klepto.logs._timeindex import first_at_or_after

__all__ = [
    "BranchInfo",
    "BranchLog",
    "Commit",
    "ConflictError",
    "Delete",
    "Entry",
    "KVView",
    "Set",
    "Transaction",
    "UnknownBranchError",
]

log = logging.getLogger("klepto.logs.branches")

Runs = list[tuple[int, int, int]]  # (writer branch, lo, hi): its commits lo+1..hi


class BranchLog:
    """A branching transaction log in ``namespace`` of ``archive``.

    ``archive`` is any klepto archive; a cache front is accepted and its backend is used
    directly, because every push must reach storage. The log never closes the archive.
    ``clock`` returns nanoseconds (inject a fake one in tests). ``index_every`` is the
    time-index interval, fixed when the namespace is created (default 64).
    """

    def __init__(
        self,
        archive: Any,
        namespace: str = "default",
        *,
        clock: Callable[[], int] = time.time_ns,
        index_every: int | None = None,
    ) -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
        self._store = BranchStore(backend(archive), namespace)
        self._clock = clock
        self._every = self._store.open_meta(index_every)
        self._lock = threading.RLock()
        self._closed = False
        # Caches of facts that never change once stored (records, timestamps), and lower
        # bounds of facts that only grow (heads, branch count): never stale in a harmful way.
        self._records: dict[int, BranchRecord] = {}
        self._heads: dict[int, int] = {}
        self._last: dict[int, tuple[int, int]] = {}  # branch -> (seq, timestamp) last pushed
        self._indexed: dict[tuple[int, int], int] = {}
        self._count = 0

    # --- identity and lifecycle -----------------------------------------------------------
    @property
    def archive(self) -> Archive:
        return self._store.archive  # type: ignore[no-any-return]

    @property
    def namespace(self) -> str:
        return self._store.namespace

    @property
    def index_every(self) -> int:
        return self._every

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the log (the archive stays open: it belongs to the caller)."""
        with self._lock:
            self._closed = True
            self._records.clear()
            self._heads.clear()
            self._last.clear()
            self._indexed.clear()

    def __enter__(self) -> BranchLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BranchLog({self.archive!s}, namespace={self.namespace!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Archives pickle as their location, so a log travels to worker processes.
        return (_reopen, (self.archive, self.namespace, self._clock, self._every))

    # --- branches -------------------------------------------------------------------------
    def create_branch(self) -> int:
        """A new root branch without commits; its id."""
        with self._lock:
            self._check_open()
            return self._allocate(parent=None, fork=0)

    def fork(self, branch: int, at: int | None = None) -> int:
        """A new branch sharing ``branch``'s history up to seq ``at`` (default: its head)."""
        with self._lock:
            self._check_open()
            head = self._head(branch)
            point = head if at is None else position(at, head, branch)
            return self._allocate(parent=self._record(branch).id, fork=point)

    def branches(self) -> list[int]:
        """The ids of all branches of the namespace, in creation order."""
        with self._lock:
            self._check_open()
            return list(range(self._branch_count()))

    def branch_info(self, branch: int) -> BranchInfo:
        """Parent, fork point, current head, creation time and rebase origin of ``branch``."""
        with self._lock:
            self._check_open()
            record = self._record(branch)
            head = self._head(branch)
        return BranchInfo(
            record.id, record.parent, record.fork, head, record.created, record.rebased_from
        )

    def head(self, branch: int) -> int:
        """The sequence number of the last commit in ``branch``'s history (0 if none)."""
        with self._lock:
            self._check_open()
            return self._head(branch)

    # --- writing --------------------------------------------------------------------------
    def push(
        self,
        branch: int,
        txns: Transaction | Iterable[Transaction],
        *,
        if_head: int | None = None,
    ) -> int:
        """Commit one transaction, or several atomically, to ``branch``; the commit's seq.

        A list is stored as one record, so it is all-or-nothing on every backend. If another
        writer took the next sequence number first, the commit goes to the following one;
        with ``if_head=n`` it is stored only as seq ``n + 1`` and a lost race raises
        :class:`ConflictError`. If ``push`` raises, the commit is stored or absent as a
        whole; a reopen sees which.
        """
        stored = encode_batch(as_batch(txns))
        with self._lock:
            self._check_open()
            branch = self._record(branch).id
            seq = self._first_free(branch, if_head)
            while True:
                timestamp = max(self._now(), self._time_at(branch, seq - 1))
                if self._store.add_node(branch, seq, timestamp, stored):
                    break
                if if_head is not None:
                    raise ConflictError(
                        f"another writer committed seq {seq} of branch {branch} first"
                    )
                log.debug("seq %d of branch %d was taken by another writer", seq, branch)
                seq += 1
            self._acknowledged(branch, seq, timestamp)
            return seq

    def rebase(self, branch: int, onto: int, *, conflict: str = "error") -> int:
        """``branch``'s changes replayed on the head of ``onto``, as a branch; its id.

        Returns ``branch`` itself when its history already contains all of ``onto``'s, and a
        plain fork of ``onto``'s head (fast-forward, nothing copied) when ``onto``'s history
        contains all of ``branch``'s. Otherwise the commits of ``branch`` after the merge
        base are pushed, one by one and in order, to a new branch forked from ``onto``'s head
        (with new timestamps). ``conflict`` is ``'error'`` (default: raise
        :class:`ConflictError`, write nothing), ``'ours'`` or ``'theirs'`` (see
        :mod:`klepto.logs._rebase`). A crash mid-rebase leaves a new branch with a prefix of
        the rebased commits (its ``rebased_from`` names the source); ``branch`` is untouched.
        """
        if conflict not in POLICIES:
            raise ValueError(f"conflict must be one of {POLICIES}, got {conflict!r}")
        with self._lock:
            self._check_open()
            branch, onto = self._record(branch).id, self._record(onto).id
            our_head, their_head = self._head(branch), self._head(onto)
            ours, theirs = self._lineage(branch, our_head), self._lineage(onto, their_head)
            base = merge_base(ours, theirs)
            if base == their_head:
                return branch
            if base == our_head:
                return self._allocate(onto, their_head, rebased_from=branch)
            batches = plan(
                list(self._read_runs(after(ours, base), 1, our_head)),
                list(self._read_runs(after(theirs, base), 1, their_head)),
                conflict,
            )
            rebased = self._allocate(onto, their_head, rebased_from=branch)
            seq = their_head
            for txns in batches:
                seq = self.push(rebased, txns, if_head=seq)
            log.debug("rebased branch %d onto %d as %d", branch, onto, rebased)
            return rebased

    # --- reading --------------------------------------------------------------------------
    def commits(
        self,
        branch: int,
        start: int | None = None,
        end: int | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
    ) -> Iterator[Commit]:
        """The commits of ``branch``'s history, root ancestor first, as :class:`Commit`.

        ``start`` and ``end`` bound sequence numbers (both inclusive; ``end`` beyond the head
        means the head); ``since`` (inclusive) and ``until`` (exclusive) bound timestamps in
        nanoseconds. The bounds are fixed when this is called: later pushes are not seen.
        """
        with self._lock:
            self._check_open()
            head = self._head(branch)
            first = 1 if start is None else seq_argument(start, "start")
            last = head if end is None else min(seq_argument(end, "end"), head)
            runs = self._lineage(branch, last)
            if since is not None:
                first = max(first, self._first_stamped(runs, since, last))
            if until is not None:
                last = min(last, self._first_stamped(runs, until, last) - 1)
        return self._read_runs(runs, first, last)

    def replay(
        self,
        branch: int,
        start: int | None = None,
        end: int | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
    ) -> Iterator[Entry]:
        """Every transaction of ``branch``'s history in order, as :class:`Entry`.

        The root ancestor's commits up to each fork point come first, then the branch's
        own. Bounds as in :meth:`commits`.
        """
        return _entries(self.commits(branch, start, end, since=since, until=until))

    def view(self, branch: int, at: int | None = None) -> KVView:
        """The key-value state of ``branch`` after seq ``at`` (default: its head)."""
        with self._lock:
            self._check_open()
            head = self._head(branch)
            point = head if at is None else position(at, head, branch)
            runs = self._lineage(branch, point)
        return KVView(fold(self._read_runs(runs, 1, point)), self._record(branch).id, point)

    # --- internals: branches --------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ArchiveClosedError(f"{self!r} is closed")

    def _now(self) -> int:
        now = operator.index(self._clock())
        if now < 0:
            raise ValueError(f"clock returned a negative time: {now}")
        return now

    def _allocate(self, parent: int | None, fork: int, rebased_from: int | None = None) -> int:
        candidate = self._branch_count()
        created = self._now()
        while True:
            record = BranchRecord(candidate, parent, fork, created, rebased_from)
            if self._store.add_branch(record):
                break
            candidate += 1  # another writer took this id first: never share or reuse it
        self._store.set_next_hint(candidate + 1)
        self._records[candidate] = record
        self._heads[candidate] = fork
        self._count = max(self._count, candidate + 1)
        log.debug("created branch %d (parent %s at %d)", candidate, parent, fork)
        return candidate

    def _branch_count(self) -> int:
        """How many branches exist; ids are allocated gap-free, so they are ``range(count)``."""
        known = self._count
        if known == 0:
            hinted = self._store.next_hint()
            if hinted and not self._store.branch_exists(hinted - 1):
                missing = f"branch count names missing branch {hinted - 1}"
                raise CorruptArchiveError(missing, key=self._store.key("next"))
            known = hinted
        self._count = gallop(lambda count: self._store.branch_exists(count - 1), known)
        return self._count

    def _record(self, branch: int) -> BranchRecord:
        branch = branch_argument(branch)
        record = self._records.get(branch)
        if record is None:
            record = self._store.read_branch(branch)
            if record is None:
                raise UnknownBranchError(f"no branch {branch} in namespace {self.namespace!r}")
            self._records[branch] = record
        return record

    def _parent_record(self, child: BranchRecord) -> BranchRecord:
        assert child.parent is not None
        try:
            return self._record(child.parent)
        except UnknownBranchError:
            key = self._store.key("branch", child.parent)
            raise CorruptArchiveError(f"parent of branch {child.id} is missing", key=key) from None

    def _lineage(self, branch: int, upto: int) -> Runs:
        """The runs of commits making up ``branch``'s history up to seq ``upto``, root first."""
        runs: Runs = []
        record = self._record(branch)
        while True:
            if upto > record.fork:
                runs.append((record.id, record.fork, upto))
                upto = record.fork
            if record.parent is None or upto == 0:
                break
            record = self._parent_record(record)
        runs.reverse()
        return runs

    def _writer(self, branch: int, seq: int) -> int:
        """The branch whose node holds seq ``seq`` of ``branch``'s history."""
        record = self._record(branch)
        while seq <= record.fork and record.parent is not None:
            record = self._parent_record(record)
        return record.id

    # --- internals: heads and pushes ------------------------------------------------------
    def _head(self, branch: int) -> int:
        record = self._record(branch)
        known = self._heads.get(record.id)
        if known is None:
            known = self._hinted_head(record)
        # Nodes are gap-free (each writer adds at the first free seq), so probing finds the
        # end, adopting commits stored after the hint (also one whose push was cut short).
        head = gallop(lambda seq: self._store.node_exists(record.id, seq), known)
        self._heads[record.id] = head
        return head

    def _hinted_head(self, record: BranchRecord) -> int:
        hinted = self._store.head_hint(record.id)
        if hinted is None:
            return record.fork
        if hinted <= record.fork or not self._store.node_exists(record.id, hinted):
            raise CorruptArchiveError(
                f"head record of branch {record.id} names missing commit {hinted}",
                key=self._store.key("head", record.id),
            )
        return hinted

    def _first_free(self, branch: int, if_head: int | None) -> int:
        if if_head is None:
            known = self._heads.get(branch)
            # A stale cached head only costs a failed add per commit others wrote since.
            return (self._head(branch) if known is None else known) + 1
        expected = operator.index(if_head)
        current = self._head(branch)
        if current != expected:
            raise ConflictError(f"head of branch {branch} is {current}, not {expected}")
        return expected + 1

    def _acknowledged(self, branch: int, seq: int, timestamp: int) -> None:
        if seq % self._every == 0:
            self._store.add_time_entry(branch, seq, timestamp)
        # Written on every push: a commit at or below the hint that goes missing is then
        # reported by replay, instead of probing ending the history early at the hole.
        self._store.set_head_hint(branch, seq)
        self._heads[branch] = max(self._heads.get(branch, 0), seq)
        self._last[branch] = (seq, timestamp)

    # --- internals: reading ---------------------------------------------------------------
    def _read_runs(self, runs: Runs, first: int, last: int) -> Iterator[Commit]:
        for writer, lo, hi in runs:
            for seq in range(max(lo + 1, first), min(hi, last) + 1):
                self._check_open()
                yield self._store.read_node(writer, seq)

    def _time_at(self, branch: int, seq: int) -> int:
        """The timestamp of seq ``seq`` of ``branch``'s history (0 before the first)."""
        if seq == 0:
            return 0
        last = self._last.get(branch)
        if last is not None and last[0] == seq:
            return last[1]
        return self._node_time(self._writer(branch, seq), seq)

    def _node_time(self, writer: int, seq: int) -> int:
        return self._store.read_node(writer, seq).timestamp

    def _indexed_time(self, writer: int, seq: int) -> int:
        cached = self._indexed.get((writer, seq))
        if cached is None:
            cached = self._store.time_entry(writer, seq)
            if cached is None:
                # A push cut short before its index entry: the node has the same timestamp.
                log.debug("time index entry %d of branch %d missing; reading node", seq, writer)
                cached = self._node_time(writer, seq)
            self._indexed[(writer, seq)] = cached
        return cached

    def _first_stamped(self, runs: Runs, moment: int, last: int) -> int:
        """The first seq stamped at or after ``moment`` (``last + 1`` if none)."""
        moment = operator.index(moment)
        found = first_at_or_after(runs, moment, self._every, self._node_time, self._indexed_time)
        return last + 1 if found is None else found


# The public types live in helper modules; name them after the module users import them
# from, so tracebacks, reprs and pickles say ``klepto.logs.branches.ConflictError``.
for _public in (BranchInfo, Commit, ConflictError, Delete, Entry, KVView, Set, UnknownBranchError):
    _public.__module__ = __name__


def _entries(commits: Iterator[Commit]) -> Iterator[Entry]:
    for commit in commits:
        for index, txn in enumerate(commit.txns):
            yield Entry(commit.seq, index, commit.branch, commit.timestamp, txn)


def _reopen(archive: Archive, namespace: str, clock: Callable[[], int], every: int) -> BranchLog:
    return BranchLog(archive, namespace, clock=clock, index_every=every)
