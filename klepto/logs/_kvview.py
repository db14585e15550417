"""``KVView``: the key-value state a branch's SET/DELETE history folds into.

Keys are compared as the archive compares them: unhashable keys (lists, dicts, sets) through
their frozen form (``klepto._canonical.freeze``), and equal numbers (``1``, ``1.0``,
``True``) as one key, exactly as in a ``dict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from klepto._canonical import freeze
from klepto.logs._branchtypes import Commit, Set

__all__ = ["KVView", "fold"]


def fold(commits: Iterable[Commit]) -> dict[Any, tuple[Any, Any]]:
    """``{frozen key: (key, value)}`` after applying every transaction in order."""
    state: dict[Any, tuple[Any, Any]] = {}
    for commit in commits:
        for txn in commit.txns:
            frozen = freeze(txn.key)
            if isinstance(txn, Set):
                state[frozen] = (txn.key, txn.value)
            else:
                state.pop(frozen, None)  # DELETE of an absent key changes nothing
    return state


class KVView(Mapping[Any, Any]):
    """A read-only mapping: the state of ``branch`` after its commit ``seq``.

    It is a snapshot taken when the view was made; later pushes do not change it.
    """

    __slots__ = ("_state", "branch", "seq")

    def __init__(self, state: dict[Any, tuple[Any, Any]], branch: int, seq: int) -> None:
        self._state = state
        self.branch = branch
        self.seq = seq

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._state[freeze(key)][1]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return freeze(key) in self._state

    def __iter__(self) -> Iterator[Any]:
        return (key for key, _ in self._state.values())

    def __len__(self) -> int:
        return len(self._state)

    def __eq__(self, other: object) -> bool:
        # Mapping's own __eq__ builds dicts of the raw keys, which fails for unhashable ones.
        if not isinstance(other, Mapping):
            return NotImplemented
        if isinstance(other, KVView):
            theirs = other._state
        else:
            theirs = {freeze(key): (key, value) for key, value in other.items()}
        return _values(self._state) == _values(theirs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        items = ", ".join(f"{key!r}: {value!r}" for key, value in self._state.values())
        return f"KVView(branch={self.branch}, seq={self.seq}, {{{items}}})"


def _values(state: dict[Any, tuple[Any, Any]]) -> dict[Any, Any]:
    return {frozen: value for frozen, (_, value) in state.items()}
