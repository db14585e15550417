"""Finding the first commit at or after a time, through the sparse per-branch time index.

Timestamps never decrease along a branch's history (a push stores
``max(clock(), previous timestamp)``), so the commits at or after a time form a suffix of
the history. Every ``index_every``-th sequence number of a branch has a small index entry
holding its timestamp; a binary search over those entries narrows the answer to one
interval, and at most ``index_every`` nodes are read to finish.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["first_at_or_after"]

TimeOf = Callable[[int, int], int]  # (branch, seq) -> timestamp


def first_at_or_after(
    segments: list[tuple[int, int, int]],
    target: int,
    every: int,
    node_time: TimeOf,
    indexed_time: TimeOf,
) -> int | None:
    """The first seq of the history ``segments`` stamped ``>= target``; None if there is none.

    ``segments`` are ``(branch, lo, hi)`` runs (commits ``lo+1..hi`` of ``branch``), root
    first; ``node_time`` reads a node, ``indexed_time`` reads an index entry.
    """
    for owner, lo, hi in segments:
        if node_time(owner, hi) >= target:
            return _search_run(owner, lo, hi, target, every, node_time, indexed_time)
    return None


def _search_run(
    owner: int, lo: int, hi: int, target: int, every: int, node_time: TimeOf, indexed_time: TimeOf
) -> int:
    first = (lo // every + 1) * every  # the first indexed seq of this run
    count = (hi - first) // every + 1 if first <= hi else 0
    below = 0  # index entries [0, below) are stamped < target
    above = count  # index entries [above, count) are stamped >= target
    while below < above:
        middle = (below + above) // 2
        if indexed_time(owner, first + middle * every) < target:
            below = middle + 1
        else:
            above = middle
    seq = lo + 1 if below == 0 else first + (below - 1) * every + 1
    # The answer is at most one index interval away (or at hi, which is stamped >= target).
    while node_time(owner, seq) < target:
        seq += 1
    return seq
