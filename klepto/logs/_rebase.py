"""Rebase planning: the merge base of two histories, their net effects and conflicts.

A history is a list of runs ``(branch, lo, hi)``: commits ``lo+1..hi`` written by
``branch``, root first, with no empty runs. Two histories share a prefix exactly where
their runs name the same writer branch, so the merge base is found by walking runs, not
commits.

A key *conflicts* when both sides changed it after the merge base and left it in different
states (different values, or present on one side and deleted on the other). Policies:

``"error"``
    raise :class:`ConflictError` listing the keys; nothing is written.
``"ours"``
    the rebased branch's transactions are replayed unchanged, so its changes win.
``"theirs"``
    the rebased branch's transactions on conflicting keys are dropped, so the new base's
    state wins for those keys; commits left empty are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from klepto._canonical import freeze
from klepto.logs._branchtypes import Commit, ConflictError, Set, Transaction

__all__ = ["POLICIES", "after", "merge_base", "plan"]

POLICIES = ("error", "ours", "theirs")
_ABSENT = object()


def merge_base(ours: list[tuple[int, int, int]], theirs: list[tuple[int, int, int]]) -> int:
    """The last sequence number the two histories share (0 if none)."""
    base = 0
    for (writer, _, our_end), (other, _, their_end) in zip(ours, theirs):
        if writer != other:
            break
        # Runs by the same branch start at its fork point; they agree up to the shorter end.
        base = min(our_end, their_end)
        if our_end != their_end:
            break
    return base


def after(runs: list[tuple[int, int, int]], base: int) -> list[tuple[int, int, int]]:
    """The part of a history after sequence number ``base``."""
    return [(writer, max(lo, base), hi) for writer, lo, hi in runs if hi > base]


def plan(ours: list[Commit], theirs: list[Commit], policy: str) -> list[tuple[Transaction, ...]]:
    """The transactions to replay on the new base, one tuple per commit, under ``policy``."""
    if policy not in POLICIES:
        raise ValueError(f"conflict must be one of {POLICIES}, got {policy!r}")
    conflicts = _conflicts(_net_effects(ours), _net_effects(theirs))
    if conflicts and policy == "error":
        keys = [key for key, _ in conflicts.values()]
        raise ConflictError(
            f"rebase conflicts on {len(keys)} key(s): {keys!r:.200}; "
            "pass conflict='ours' or conflict='theirs' to resolve",
            keys=keys,
        )
    if policy == "theirs" and conflicts:
        kept = (tuple(t for t in c.txns if freeze(t.key) not in conflicts) for c in ours)
        return [txns for txns in kept if txns]
    return [commit.txns for commit in ours]


def _net_effects(commits: Iterable[Commit]) -> dict[Any, tuple[Any, Any]]:
    """``{frozen key: (key, final value or _ABSENT)}`` for every key the commits touch."""
    effects: dict[Any, tuple[Any, Any]] = {}
    for commit in commits:
        for txn in commit.txns:
            value = txn.value if isinstance(txn, Set) else _ABSENT
            effects[freeze(txn.key)] = (txn.key, value)
    return effects


def _conflicts(ours: dict[Any, Any], theirs: dict[Any, Any]) -> dict[Any, tuple[Any, Any]]:
    return {
        frozen: effect
        for frozen, effect in ours.items()
        if frozen in theirs and not _same(effect[1], theirs[frozen][1])
    }


def _same(ours: Any, theirs: Any) -> bool:
    if ours is theirs:
        return True
    if ours is _ABSENT or theirs is _ABSENT:
        return False
    try:
        return bool(ours == theirs)
    except (TypeError, ValueError):
        # Values without a plain truth value for == (numpy arrays) count as different: a
        # false conflict is reported, never a silent overwrite.
        return False
